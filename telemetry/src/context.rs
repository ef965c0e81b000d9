//! W3C trace context (`traceparent`, version 00) on HTTP requests and Kafka messages.
//!
//! Every helper returns at once when tracing is off ([`crate::enabled`]), so the hot paths pay
//! nothing for them then. Spans must be given their parent and links before they are first
//! entered (the OpenTelemetry span is built then).

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::enabled;

/// The Kafka (and HTTP) header that carries the context.
pub const HEADER: &str = "traceparent";

/// Most traces one batch span links to; a batch of many requests links the first ones and counts
/// the rest in `flightline.links_dropped`.
pub const MAX_LINKS: usize = 32;

/// A `traceparent` value as a span context (remote), or `None` when it is not a valid one.
pub fn parse(value: &str) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    // Version 00 has exactly four fields; a later version may append more.
    let version_ok = version.len() == 2 && version != "ff" && (version != "00" || parts.next().is_none());
    if !version_ok || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok().filter(|id| *id != TraceId::INVALID)?;
    let span_id = SpanId::from_hex(span).ok().filter(|id| *id != SpanId::INVALID)?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some(SpanContext::new(trace_id, span_id, TraceFlags::new(flags & 1), true, TraceState::NONE))
}

/// The `traceparent` value of a span context.
pub fn format(context: &SpanContext) -> String {
    format!("00-{}-{}-{:02x}", context.trace_id(), context.span_id(), context.trace_flags().to_u8())
}

/// The `traceparent` of `span` — what a message produced inside it carries — or `None` when
/// tracing is off.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| format(&span_context))
}

/// The trace id of `span` (hex), for a log line or a response; `None` when tracing is off.
pub fn trace_id_of(span: &tracing::Span) -> Option<String> {
    if !enabled() {
        return None;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

/// A child span of the current one, made by `make`, only when the current span is recorded (its
/// trace sampled); `Span::none()` otherwise. For hot paths: an unsampled request then pays for
/// its one root span, not for every step under it.
pub fn child(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    if enabled() && tracing::Span::current().context().span().span_context().is_sampled() {
        make()
    } else {
        tracing::Span::none()
    }
}

/// Makes `span` a child of the remote context `traceparent` (a request's or a message's).
/// Without a valid one the span starts a trace of its own.
pub fn set_parent(span: &tracing::Span, traceparent: Option<&str>) {
    if !enabled() {
        return;
    }
    if let Some(remote) = traceparent.and_then(parse) {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}

/// Ties a batch span to the traces of the messages it carries: it joins the trace of the first
/// sampled message (so following that packet reaches the batch) and links the other sampled
/// traces, at most [`MAX_LINKS`] of them. A batch of unsampled messages only takes an unsampled
/// parent, so the ratio sampler's decision made at ingest holds downstream too.
pub fn follow_batch<'a>(span: &tracing::Span, contexts: impl IntoIterator<Item = Option<&'a str>>) {
    if !enabled() {
        return;
    }
    let mut parent: Option<SpanContext> = None;
    let mut unsampled: Option<SpanContext> = None;
    let mut linked: Vec<TraceId> = Vec::new();
    let mut dropped = 0i64;
    let mut previous: Option<&str> = None;
    for value in contexts.into_iter().flatten() {
        // The messages of one request carry the same value: parse it once.
        if previous == Some(value) {
            continue;
        }
        previous = Some(value);
        let Some(context) = parse(value) else { continue };
        if !context.is_sampled() {
            unsampled.get_or_insert(context);
            continue;
        }
        let Some(first) = &parent else {
            parent = Some(context);
            continue;
        };
        let trace_id = context.trace_id();
        if trace_id == first.trace_id() || linked.contains(&trace_id) {
            continue;
        }
        if linked.len() >= MAX_LINKS {
            dropped += 1;
            continue;
        }
        linked.push(trace_id);
        span.add_link(context);
    }
    if dropped > 0 {
        span.set_attribute("flightline.links_dropped", dropped);
    }
    if let Some(parent) = parent.or(unsampled) {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(parent));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips() {
        let value = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let context = parse(value).expect("valid");
        assert!(context.is_sampled());
        assert!(context.is_remote());
        assert_eq!(format(&context), value);
        let unsampled = parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").expect("valid");
        assert!(!unsampled.is_sampled());
    }

    #[test]
    fn invalid_traceparents_are_refused() {
        for value in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473x-00f067aa0ba902b7-01",
        ] {
            assert!(parse(value).is_none(), "{value}");
        }
        // A later version may carry more fields.
        assert!(parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra").is_some());
    }

    #[test]
    fn helpers_do_nothing_when_tracing_is_off() {
        let span = tracing::info_span!("off");
        assert_eq!(traceparent_of(&span), None);
        follow_batch(&span, [Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")]);
    }
}
