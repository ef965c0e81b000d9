//! Log lines with the trace id of the span they were written in (only while tracing is on).

use opentelemetry::trace::TraceContextExt;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The default log format, with ` trace_id=…` appended to a line written inside a span.
#[derive(Default)]
pub(crate) struct WithTraceId {
    inner: Format<Full>,
}

impl<S, N> FormatEvent<S, N> for WithTraceId
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let trace_id = ctx.lookup_current().and_then(|span| {
            let id = span.id();
            tracing::dispatcher::get_default(|dispatch| tracing_opentelemetry::get_otel_context(&id, dispatch))
                .map(|context| context.span().span_context().trace_id())
                .filter(|trace_id| *trace_id != opentelemetry::trace::TraceId::INVALID)
        });
        let Some(trace_id) = trace_id else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::with_capacity(256);
        // Buffered without colours: the id goes at the end of the line.
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.trim_end_matches('\n');
        writeln!(writer, "{line} trace_id={trace_id}")
    }
}
