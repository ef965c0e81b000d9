//! Tracing for every Flightline process: where spans go and how a trace follows the data.
//!
//! [`init`] installs the process's `tracing` subscriber: logs to stderr, and — only when an
//! OTLP endpoint is configured — an OpenTelemetry layer that exports spans over OTLP/HTTP to it
//! (Jaeger, a collector). Without an endpoint no exporter, no OpenTelemetry layer and no
//! per-message context work exist: [`enabled`] is false and the helpers in [`context`] return
//! at once.
//!
//! [`context`] carries W3C trace context (`traceparent`) through Kafka headers: ingest writes
//! the context of its append span on every message; each processor's batch span joins the trace
//! of its first sampled message and links the others (bounded); the sessionizer hands the
//! closing packet's context to analytics on the `FlightClosed` message.

pub mod context;
mod export;
mod logs;

use std::sync::atomic::{AtomicBool, Ordering};

pub use export::{init, Guard, TelemetryConfig};

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (an OTLP endpoint is configured). Callers skip context work when not.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}
