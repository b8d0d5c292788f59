//! Logging and tracing: JSON lines by default (pretty in a terminal), level
//! from `RUST_LOG`, optional OTLP trace export when `HOOKLINE_OTLP_ENDPOINT`
//! or the standard `OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT` is set. The other
//! standard variables apply too: `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_TRACES_SAMPLER(_ARG)`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`. Each layer has its own filter, so the log
//! level never silences the spans an exporter needs.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, Settings};

/// Keeps the exporter alive; dropping it flushes pending spans.
pub struct TelemetryGuard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

pub fn init(service: &'static str, settings: &Settings) -> anyhow::Result<TelemetryGuard> {
    let format = settings.log_format.unwrap_or(if std::io::stderr().is_terminal() {
        LogFormat::Pretty
    } else {
        LogFormat::Json
    });
    let filter =
        || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,lapin=warn,h2=warn,hyper=warn"));
    let fmt_layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_filter(filter())
            .boxed(),
        LogFormat::Pretty => {
            tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter()).boxed()
        }
    };
    let exporting = settings.otlp_endpoint.is_some()
        || ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
    let (otel_layer, provider) = match exporting {
        true => {
            use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
            let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic();
            if let Some(endpoint) = &settings.otlp_endpoint {
                exporter = exporter.with_endpoint(endpoint);
            }
            let endpoint = settings.otlp_endpoint.clone().or_else(|| {
                ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
                    .iter()
                    .find_map(|v| std::env::var(v).ok().filter(|v| !v.is_empty()))
            });
            if endpoint.is_some_and(|e| e.starts_with("https://")) {
                exporter = exporter.with_tls_config(collector_tls()?);
            }
            let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(exporter.build()?)
                .with_resource(resource(service))
                .build();
            let tracer = provider.tracer(service);
            opentelemetry::global::set_tracer_provider(provider.clone());
            let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(EnvFilter::new("info")).boxed();
            (Some(layer), Some(provider))
        }
        false => (None, None),
    };
    opentelemetry::global::set_text_map_propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new());
    tracing_subscriber::registry().with(fmt_layer).with(otel_layer).try_init()?;
    Ok(TelemetryGuard { provider })
}

/// TLS to an `https://` collector: the built-in roots and the CA bundle of
/// `HOOKLINE_TLS_CA_FILE`, as for every other dependency.
fn collector_tls() -> anyhow::Result<opentelemetry_otlp::tonic_types::transport::ClientTlsConfig> {
    use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig};
    let mut tls = ClientTlsConfig::new().with_webpki_roots();
    if let Some(path) = std::env::var_os("HOOKLINE_TLS_CA_FILE").filter(|p| !p.is_empty()) {
        let pem = std::fs::read(&path)
            .map_err(|e| anyhow::anyhow!("reading HOOKLINE_TLS_CA_FILE {}: {e}", path.to_string_lossy()))?;
        tls = tls.ca_certificate(Certificate::from_pem(pem));
    }
    Ok(tls)
}

/// What every exported span says of its process: `service.name` (the
/// service's own, e.g. `hookline-worker`, unless `OTEL_SERVICE_NAME` says
/// otherwise), `service.version`, and `OTEL_RESOURCE_ATTRIBUTES`.
pub fn resource(service: &'static str) -> opentelemetry_sdk::Resource {
    let builder = opentelemetry_sdk::Resource::builder();
    let builder = match std::env::var_os("OTEL_SERVICE_NAME").is_some_and(|v| !v.is_empty()) {
        true => builder,
        false => builder.with_service_name(service),
    };
    builder.with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION"))).build()
}

/// Makes `span` a child of a remote W3C trace context, so exported spans
/// join the caller's trace. A no-op when no exporter is configured.
pub fn attach_parent(span: &tracing::Span, tp: &hookline_domain::trace::TraceParent) {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let flags = if tp.sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
    let sc = SpanContext::new(
        TraceId::from_bytes(tp.trace_id),
        SpanId::from_bytes(tp.span_id),
        flags,
        true,
        TraceState::default(),
    );
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(sc));
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_service_reports_its_own_name_and_version() {
        // OTEL_SERVICE_NAME is not set in the test environment.
        let r = super::resource("hookline-worker");
        let get = |k: &'static str| r.get(&opentelemetry::Key::from_static_str(k)).map(|v| v.to_string());
        assert_eq!(get("service.name").as_deref(), Some("hookline-worker"));
        assert_eq!(get("service.version").as_deref(), Some(env!("CARGO_PKG_VERSION")));
    }
}
