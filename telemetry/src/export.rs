//! The process's subscriber: logs always, OTLP/HTTP span export when an endpoint is configured.

use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Share of new traces recorded when `OTEL_TRACES_SAMPLER` is not set (parent-based: a request
/// that arrives with a sampled `traceparent` is always recorded). BENCHMARKS.md has the cost.
pub const DEFAULT_SAMPLE_RATIO: f64 = 0.01;

/// What [`init`] needs to know about the process.
pub struct TelemetryConfig<'a> {
    /// `service.name` of the spans, e.g. `flightline-ingest`; `OTEL_SERVICE_NAME` wins.
    pub service_name: &'a str,
    /// OTLP/HTTP base URL (`OTEL_EXPORTER_OTLP_ENDPOINT`, or `otel_endpoint` in the settings
    /// file), e.g. `http://127.0.0.1:4318`; spans go to `<endpoint>/v1/traces`. Empty: no export
    /// (unless `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` names one).
    pub endpoint: &'a str,
}

/// Flushes the spans still queued when dropped (or on [`Guard::shutdown`]). Drop it outside the
/// async runtime: the flush blocks.
#[must_use = "dropping the guard stops the export"]
pub struct Guard {
    provider: Option<SdkTracerProvider>,
}

impl Guard {
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(provider) = self.provider.take() {
            crate::ENABLED.store(false, Ordering::Relaxed);
            if let Err(error) = provider.shutdown() {
                eprintln!("warning: flushing the last spans failed: {error}");
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Installs the global subscriber: logs to stderr filtered by `RUST_LOG` (default `info`) and,
/// when an endpoint is configured, spans exported over OTLP/HTTP with every log line inside a
/// span carrying its `trace_id`. The standard variables apply: `OTEL_SERVICE_NAME`,
/// `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_BSP_*`,
/// `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`, `…_HEADERS`, `…_TIMEOUT`, `OTEL_SDK_DISABLED`. An
/// invalid configuration is reported and leaves tracing off; it never stops the process.
/// Call it before the async runtime starts.
pub fn init(config: &TelemetryConfig<'_>) -> Guard {
    let logs_filter =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,rdkafka=warn"));
    let disabled = env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let signal_endpoint = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
    let endpoint = config.endpoint.trim();
    if disabled || (endpoint.is_empty() && signal_endpoint.is_none()) {
        let _ = tracing_subscriber::fmt().with_env_filter(logs_filter()).with_writer(std::io::stderr).try_init();
        return Guard { provider: None };
    }
    let provider = match provider(config.service_name, endpoint, signal_endpoint.is_some()) {
        Ok(provider) => provider,
        Err(error) => {
            let _ = tracing_subscriber::fmt().with_env_filter(logs_filter()).with_writer(std::io::stderr).try_init();
            tracing::error!(%error, endpoint, "invalid OTLP configuration; traces are not exported");
            return Guard { provider: None };
        }
    };
    let tracer = provider.tracer("flightline");
    let logs = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .event_format(crate::logs::WithTraceId::default())
        .with_filter(logs_filter());
    // Spans of every crate at info and above; their events become span events.
    // Per-poll work off: no busy/idle timers, no code location or thread attributes, no
    // OpenTelemetry context activation on entry (nothing here reads `Context::current`; the
    // helpers take a span's context from the layer). It made the 1 % case cost as much as 100 %.
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_tracked_inactivity(false)
        .with_location(false)
        .with_threads(false)
        .with_context_activation(false)
        .with_filter(EnvFilter::new("info"));
    if tracing_subscriber::registry().with(logs).with(spans).try_init().is_err() {
        // A subscriber exists already (tests): keep it, export nothing.
        let _ = provider.shutdown();
        return Guard { provider: None };
    }
    crate::ENABLED.store(true, Ordering::Relaxed);
    tracing::info!(service = config.service_name, endpoint, "exporting traces over OTLP/HTTP");
    Guard { provider: Some(provider) }
}

fn provider(
    service_name: &str,
    endpoint: &str,
    signal_endpoint_set: bool,
) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    let timeout = env("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT")
        .or_else(|| env("OTEL_EXPORTER_OTLP_TIMEOUT"))
        .and_then(|ms| ms.parse::<u64>().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis);
    let client = BlockingClient::new(timeout)
        .map_err(|error| opentelemetry_otlp::ExporterBuildError::InternalFailure(error.to_string()))?;
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_http().with_http_client(client);
    if !signal_endpoint_set && std::env::var_os("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() {
        // From the settings file: the SDK reads only the environment, so give it the full URL.
        exporter = exporter.with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')));
    }
    let exporter = exporter.build()?;
    let mut resource = Resource::builder();
    if env("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(service_name.to_owned());
    }
    let mut builder = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build());
    if env("OTEL_TRACES_SAMPLER").is_none() {
        builder =
            builder.with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(DEFAULT_SAMPLE_RATIO))));
    }
    Ok(builder.build())
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.trim().is_empty())
}

/// The OTLP exporter's HTTP client: the workspace's reqwest, blocking (the SDK exports from its
/// own thread, outside the async runtime). Failures are logged, at most once a minute.
#[derive(Debug)]
struct BlockingClient {
    client: reqwest::blocking::Client,
    last_warning: Mutex<Option<Instant>>,
}

impl BlockingClient {
    fn new(timeout: Duration) -> reqwest::Result<Self> {
        let client = reqwest::blocking::Client::builder().timeout(timeout).build()?;
        Ok(Self { client, last_warning: Mutex::new(None) })
    }

    fn warn(&self, problem: &str) {
        let mut last = self.last_warning.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            *last = Some(Instant::now());
            tracing::warn!(problem, "exporting spans failed; they are dropped (warned at most once a minute)");
        }
    }

    fn send(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let response = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body.to_vec())
            .send()?;
        let status = response.status();
        let mut built = Response::builder().status(status);
        if let Some(headers) = built.headers_mut() {
            headers.extend(response.headers().iter().map(|(name, value)| (name.clone(), value.clone())));
        }
        let bytes = response.bytes()?;
        if !status.is_success() {
            self.warn(&format!("the collector answered {status}"));
        }
        Ok(built.body(bytes)?)
    }
}

#[async_trait::async_trait]
impl HttpClient for BlockingClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        self.send(request).inspect_err(|error| self.warn(&error.to_string()))
    }
}
