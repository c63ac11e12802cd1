//! One OpenTelemetry span per run, exported over OTLP.
//!
//! Tracing is configured from the standard `OTEL_*` environment variables (or
//! a [`TracingBuilder`]) and is off — no provider, no span, no cost — when no
//! endpoint is configured or `OTEL_SDK_DISABLED=true`. Spans go through a
//! batch processor whose export runs on its own thread with the blocking
//! HTTP client, so ending a run never touches the caller's async runtime; the
//! guard flushes at the end of every run with a bounded timeout, so a
//! short-lived process loses no span and a down collector costs at most that
//! timeout. The run's context travels to child processes in the `TRACEPARENT`,
//! `TRACESTATE` and `BAGGAGE` environment variables (the OpenTelemetry
//! environment-carrier convention) and is picked up from them.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry::trace::{
    SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracer, SdkTracerProvider};

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// An `OTEL_*` variable or builder value is unusable.
    #[error("invalid tracing configuration: {0}")]
    Config(String),
    /// The OTLP exporter could not be built.
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(String),
}

/// The wire protocol of the OTLP exporter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Protocol {
    /// OTLP over HTTP with protobuf bodies (port 4318).
    #[default]
    HttpProtobuf,
    /// OTLP over gRPC (port 4317); needs the `otlp-grpc` feature.
    Grpc,
}

/// Configures [`Tracing`].
///
/// | setting | default |
/// |---|---|
/// | [`endpoint`](Self::endpoint) | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, else `OTEL_EXPORTER_OTLP_ENDPOINT` (+ `/v1/traces` for HTTP) |
/// | [`protocol`](Self::protocol) | `OTEL_EXPORTER_OTLP_PROTOCOL`, else `http/protobuf` |
/// | [`service_name`](Self::service_name) | `OTEL_SERVICE_NAME`, else `service.name` in `OTEL_RESOURCE_ATTRIBUTES`, else `pushguard` |
/// | [`timeout`](Self::timeout) | 2 s for one export and for the flush at the end of a run |
///
/// ```no_run
/// let tracing = pushguard::Tracing::builder()
///     .endpoint("http://127.0.0.1:4318/v1/traces")
///     .service_name("etl")
///     .build()?;
/// # Ok::<(), pushguard::TraceError>(())
/// ```
#[derive(Debug, Clone, Default)]
#[must_use = "a builder does nothing until `build()` is called"]
pub struct TracingBuilder {
    endpoint: Option<String>,
    protocol: Option<Protocol>,
    service_name: Option<String>,
    timeout: Option<Duration>,
}

impl TracingBuilder {
    /// The full OTLP traces endpoint (`http://HOST:4318/v1/traces`, or
    /// `http://HOST:4317` for gRPC).
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The OTLP protocol.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// The `service.name` resource attribute.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// Time limit of one export and of the flush that ends a run.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Builds the tracer provider. Other settings (headers, resource
    /// attributes) come from the `OTEL_*` environment as usual.
    pub fn build(self) -> Result<Tracing, TraceError> {
        let protocol = match self.protocol {
            Some(protocol) => protocol,
            None => protocol_from_env()?,
        };
        let timeout = self.timeout.unwrap_or(Duration::from_secs(2));
        // The exporter's own client (https) needs a rustls provider too.
        crate::http_client::install_ring();
        let exporter = match protocol {
            Protocol::HttpProtobuf => {
                let mut builder = opentelemetry_otlp::SpanExporter::builder()
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_timeout(timeout);
                if let Some(endpoint) = &self.endpoint {
                    builder = builder.with_endpoint(endpoint.clone());
                }
                if let Some(client) = plain_http_client(self.endpoint.as_deref(), timeout) {
                    builder = builder.with_http_client(client);
                }
                builder.build()
            }
            #[cfg(feature = "otlp-grpc")]
            Protocol::Grpc => {
                let mut builder = opentelemetry_otlp::SpanExporter::builder()
                    .with_tonic()
                    .with_timeout(timeout);
                if let Some(endpoint) = &self.endpoint {
                    builder = builder.with_endpoint(endpoint.clone());
                }
                builder.build()
            }
            #[cfg(not(feature = "otlp-grpc"))]
            Protocol::Grpc => {
                return Err(TraceError::Config(
                    "OTLP over gRPC needs the `otlp-grpc` feature; use OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf".into(),
                ));
            }
        }
        .map_err(|e| TraceError::Exporter(e.to_string()))?;

        let mut resource = opentelemetry_sdk::Resource::builder();
        let service = self.service_name.or_else(|| {
            let from_env = env("OTEL_SERVICE_NAME").is_some()
                || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
            (!from_env).then(|| "pushguard".to_owned())
        });
        if let Some(service) = service {
            resource = resource.with_service_name(service);
        }
        let processor = BatchSpanProcessor::builder(exporter).build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource.build())
            .build();
        let tracer = provider.tracer("pushguard");
        Ok(Tracing {
            inner: Arc::new(Inner {
                provider,
                tracer,
                timeout,
            }),
        })
    }
}

/// For a plain `http://` collector, a blocking client that does not load the
/// system's root certificates (which costs milliseconds at every start of a
/// short-lived process), from the crate's one client builder. `None` for https
/// (the exporter's default client verifies with the system roots).
fn plain_http_client(
    endpoint: Option<&str>,
    timeout: Duration,
) -> Option<reqwest::blocking::Client> {
    let endpoint = endpoint
        .map(str::to_owned)
        .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))?;
    if !endpoint
        .trim_start()
        .to_ascii_lowercase()
        .starts_with("http://")
    {
        return None;
    }
    crate::http_client::HttpClientBuilder::new()
        .target(&endpoint)
        .timeout(timeout)
        .follow_redirects(true)
        .build_blocking()
        .ok()
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn protocol_from_env() -> Result<Protocol, TraceError> {
    let value =
        env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"));
    match value.as_deref().map(str::trim) {
        None | Some("http/protobuf") => Ok(Protocol::HttpProtobuf),
        Some("grpc") => Ok(Protocol::Grpc),
        Some(other) => Err(TraceError::Config(format!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported: use http/protobuf or grpc"
        ))),
    }
}

/// A tracer provider exporting over OTLP. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Tracing {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    timeout: Duration,
}

impl Tracing {
    /// A builder with the defaults listed on [`TracingBuilder`].
    pub fn builder() -> TracingBuilder {
        TracingBuilder::default()
    }

    /// Tracing as the environment configures it: `None` when
    /// `OTEL_SDK_DISABLED=true` or neither `OTEL_EXPORTER_OTLP_ENDPOINT` nor
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set.
    pub fn from_env() -> Result<Option<Tracing>, TraceError> {
        if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        if env("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
            && env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none()
        {
            return Ok(None);
        }
        Self::builder().build().map(Some)
    }

    /// The process-wide tracing from the environment, set up on first use and
    /// installed as the global tracer provider (so `opentelemetry::global`
    /// tracers export through it too). `None` when tracing is off or the
    /// environment is invalid (the error is returned once, on first use).
    pub fn global() -> Result<Option<Tracing>, TraceError> {
        static GLOBAL: OnceLock<Option<Tracing>> = OnceLock::new();
        let mut error = None;
        let tracing = GLOBAL.get_or_init(|| match Self::from_env() {
            Ok(tracing) => {
                if let Some(tracing) = &tracing {
                    opentelemetry::global::set_tracer_provider(tracing.inner.provider.clone());
                }
                tracing
            }
            Err(e) => {
                error = Some(e);
                None
            }
        });
        match error {
            Some(e) => Err(e),
            None => Ok(tracing.clone()),
        }
    }

    /// The tracer runs are traced with; use it for child spans.
    pub fn tracer(&self) -> &SdkTracer {
        &self.inner.tracer
    }

    /// The provider, for installing as the global one or in a `tracing` layer.
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.inner.provider
    }

    /// Exports every ended span now, waiting at most the configured timeout.
    pub fn flush(&self) -> Result<(), TraceError> {
        self.inner
            .provider
            .force_flush()
            .map_err(|e| TraceError::Exporter(e.to_string()))
    }

    /// Flushes and stops the exporter; spans ended later are dropped.
    pub fn shutdown(&self) -> Result<(), TraceError> {
        self.inner
            .provider
            .shutdown_with_timeout(self.inner.timeout)
            .map_err(|e| TraceError::Exporter(e.to_string()))
    }

    /// A `tracing-subscriber` layer that exports `tracing` spans through this
    /// provider; spans entered under [`JobGuard::context`](crate::JobGuard::context)
    /// become children of the run's span.
    #[cfg(feature = "tracing")]
    pub fn layer<S>(&self) -> tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.inner.tracer.clone())
    }

    /// The context this process inherited in `TRACEPARENT` / `TRACESTATE` /
    /// `BAGGAGE` (empty when none is set); a run started without a current
    /// run around it is a child of this context.
    pub fn context_from_env() -> Context {
        context_from_env()
    }

    /// The environment variables (`TRACEPARENT`, and `TRACESTATE`, `BAGGAGE`
    /// when not empty) that carry `context` to a child process.
    ///
    /// ```
    /// let env = pushguard::Tracing::env_for_child(&opentelemetry::Context::new());
    /// assert!(env.is_empty()); // nothing to carry without a span
    /// ```
    pub fn env_for_child(context: &Context) -> Vec<(String, String)> {
        env_for_child(context)
    }
}

/// Environment variables of the OpenTelemetry environment carrier.
const CARRIER: [(&str, &str); 3] = [
    ("traceparent", "TRACEPARENT"),
    ("tracestate", "TRACESTATE"),
    ("baggage", "BAGGAGE"),
];

fn propagator() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ])
}

struct EnvExtractor(HashMap<&'static str, String>);

impl Extractor for EnvExtractor {
    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key.to_ascii_lowercase().as_str())
            .map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().copied().collect()
    }
}

/// See [`Tracing::context_from_env`].
pub(crate) fn context_from_env() -> Context {
    let mut found = HashMap::new();
    for (key, var) in CARRIER {
        if let Some(value) = env(var) {
            found.insert(key, value);
        }
    }
    if found.is_empty() {
        return Context::new();
    }
    propagator().extract(&EnvExtractor(found))
}

struct VecInjector(Vec<(String, String)>);

impl Injector for VecInjector {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_owned(), value));
    }
}

/// See [`Tracing::env_for_child`].
pub(crate) fn env_for_child(context: &Context) -> Vec<(String, String)> {
    let mut injector = VecInjector(Vec::new());
    propagator().inject_context(context, &mut injector);
    injector
        .0
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .filter_map(|(key, value)| {
            CARRIER
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&key))
                .map(|(_, var)| ((*var).to_owned(), value))
        })
        .collect()
}

/// The root span of one run.
#[derive(Debug)]
pub(crate) struct RunSpan {
    tracing: Tracing,
    context: Context,
}

impl RunSpan {
    pub(crate) fn start(
        tracing: &Tracing,
        name: &str,
        started: SystemTime,
        attributes: Vec<KeyValue>,
        parent: &Context,
    ) -> RunSpan {
        let span = tracing
            .inner
            .tracer
            .span_builder(name.to_owned())
            .with_kind(SpanKind::Internal)
            .with_start_time(started)
            .with_attributes(attributes)
            .start_with_context(&tracing.inner.tracer, parent);
        RunSpan {
            tracing: tracing.clone(),
            context: parent.with_span(span),
        }
    }

    pub(crate) fn context(&self) -> &Context {
        &self.context
    }

    pub(crate) fn trace_id(&self) -> String {
        self.context.span().span_context().trace_id().to_string()
    }

    /// Sets the final attributes and status, ends the span and flushes.
    pub(crate) fn end(self, attributes: Vec<KeyValue>, error: Option<String>, ended: SystemTime) {
        let span = self.context.span();
        span.set_attributes(attributes);
        match error {
            Some(message) => span.set_status(Status::error(message)),
            None => span.set_status(Status::Ok),
        }
        span.end_with_timestamp(ended);
        // Bounded by the exporter timeout; a down collector never fails the run.
        let _ = self.tracing.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn carrier_round_trip() {
        let parent = TraceContextPropagator::new().extract(&EnvExtractor(HashMap::from([(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
        )])));
        let env = env_for_child(&parent);
        assert_eq!(
            env,
            [(
                "TRACEPARENT".to_owned(),
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned()
            )]
        );
        assert!(env_for_child(&Context::new()).is_empty());
    }
}
