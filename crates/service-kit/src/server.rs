//! Building and running the HTTP server of an API (or of both APIs at once,
//! for `hookline run all`).

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, App, HttpServer};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::error::{json_error_handler, path_error_handler, query_error_handler, ApiError};
use crate::ops::Probes;

/// Mounts one API's routes and registers the state they extract.
pub type Mount = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// Everything one server serves.
#[derive(Clone)]
pub struct ServerSpec {
    /// The process name in logs ("control-api", "all", ...).
    pub service: &'static str,
    pub mounts: Vec<Mount>,
    pub openapi: utoipa::openapi::OpenApi,
    pub probes: Probes,
    /// What `GET /` answers: the service's name and links.
    pub index: serde_json::Value,
    pub limits: Limits,
}

/// What a request may send: its body's size, and how long it may take to arrive.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_payload_bytes: usize,
    pub body_timeout: Duration,
}

impl Limits {
    pub fn from_settings(s: &Settings) -> Self {
        Self { max_payload_bytes: s.max_payload_bytes, body_timeout: Duration::from_secs(s.body_timeout_secs) }
    }
}

/// Builds the server on an already bound listener (tests bind port 0).
pub fn build(spec: ServerSpec, listener: std::net::TcpListener) -> anyhow::Result<actix_web::dev::Server> {
    let probes = web::Data::new(spec.probes.clone());
    let limits = web::Data::new(spec.limits);
    let max = spec.limits.max_payload_bytes;
    let index = web::Data::new(spec.index.clone());
    let server = HttpServer::new(move || {
        let mut app = App::new()
            .wrap(actix_web::middleware::from_fn(crate::storable::refuse_nul))
            .wrap(actix_web::middleware::from_fn(api_trailing_slash))
            .wrap(actix_web::middleware::from_fn(body_deadline))
            .wrap(actix_web::middleware::from_fn(crate::auth::rate_limit_headers))
            .wrap(actix_web::middleware::from_fn(no_store))
            .wrap(actix_web::middleware::from_fn(crate::metrics::http_metrics))
            .app_data(limits.clone())
            .app_data(probes.clone())
            .app_data(index.clone())
            .app_data(web::JsonConfig::default().limit(max).error_handler(json_error_handler))
            .app_data(web::PayloadConfig::default().limit(max))
            .app_data(web::QueryConfig::default().error_handler(query_error_handler))
            .app_data(web::PathConfig::default().error_handler(path_error_handler))
            .configure(crate::ops::configure_probes)
            .configure(crate::docs::configure(spec.openapi.clone()))
            .route("/", web::get().to(root));
        for m in &spec.mounts {
            app = app.configure(|cfg| m(cfg));
        }
        app.default_service(web::to(not_found))
    })
    .disable_signals()
    .shutdown_timeout(10)
    .listen(listener)?
    .run();
    Ok(server)
}

/// Serves until `cancel` fires, then drains in-flight requests. The
/// operations listener (`/metrics`) runs beside it when `ops_listen` is set.
pub async fn serve(
    spec: ServerSpec,
    addr: std::net::SocketAddr,
    ops_listen: Option<std::net::SocketAddr>,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let listener = std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e} (set HOOKLINE_LISTEN)"))?;
    spec.probes.watch(cancel.clone());
    let ops = match ops_listen {
        Some(ops_addr) => {
            let ops = crate::ops::serve_ops(spec.probes.clone(), crate::ops::bind(ops_addr)?, cancel.clone())?;
            tracing::info!(addr = %ops_addr, "health, readiness and metrics listening");
            Some(ops)
        }
        None => {
            tracing::warn!("HOOKLINE_OPS_LISTEN is not set, so /metrics is not served");
            None
        }
    };
    let service = spec.service;
    let server = build(spec, listener)?;
    tracing::info!(%addr, service, "listening");
    let handle = server.handle();
    tokio::spawn(async move {
        cancel.cancelled().await;
        handle.stop(true).await;
    });
    server.await?;
    if let Some(ops) = ops {
        let _ = ops.await;
    }
    Ok(())
}

/// Gives the request body `HOOKLINE_BODY_TIMEOUT_SECS` to arrive in full:
/// a client that sends its headers and then trickles (or stalls) its body
/// gets an error instead of holding a connection and a handler forever.
async fn body_deadline(
    mut req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::HttpMessage;
    use futures_util::StreamExt;
    let limit = req.app_data::<web::Data<Limits>>().map_or(Duration::from_secs(30), |l| l.body_timeout);
    let secs = limit.as_secs();
    let deadline = tokio::time::Instant::now() + limit;
    let payload = req.take_payload();
    let guarded = futures_util::stream::unfold(Some(payload), move |state| async move {
        let mut payload = state?;
        match tokio::time::timeout_at(deadline, payload.next()).await {
            Ok(Some(item)) => Some((item, Some(payload))),
            Ok(None) => None,
            Err(_) => Some((
                Err(actix_web::error::PayloadError::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the request body did not arrive within {secs} s"),
                ))),
                None,
            )),
        }
    });
    req.set_payload(actix_web::dev::Payload::from(Box::pin(guarded)
        as std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<web::Bytes, actix_web::error::PayloadError>>>>));
    next.call(req).await
}

/// `/api/v1/webhooks/` is `/api/v1/webhooks`: every API route answers the
/// same with or without a trailing slash (clients written against other
/// webhook systems add one). Outside `/api/` paths are left alone.
async fn api_trailing_slash(
    mut req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    let path = req.path();
    if path.starts_with("/api/") && path.len() > "/api/".len() && path.ends_with('/') {
        let trimmed = path.trim_end_matches('/');
        let with_query = match req.uri().query() {
            Some(q) => format!("{trimmed}?{q}"),
            None => trimmed.to_owned(),
        };
        let mut parts = req.uri().clone().into_parts();
        parts.path_and_query = with_query.parse().ok();
        if let Ok(uri) = actix_web::http::Uri::from_parts(parts) {
            req.match_info_mut().get_mut().update(&uri);
            req.head_mut().uri = uri;
        }
    }
    next.call(req).await
}

/// API answers are a tenant's data, and some carry a secret shown once
/// (a new key, a webhook secret): no cache may keep them.
async fn no_store(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::http::header::{HeaderValue, CACHE_CONTROL};
    let mut res = next.call(req).await?;
    let api = res.request().match_pattern().unwrap_or_else(|| res.request().path().to_owned()).starts_with("/api/");
    if api {
        res.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(res)
}

async fn root(index: web::Data<serde_json::Value>) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().json(index.get_ref())
}

/// Unknown routes answer a problem too.
pub async fn not_found(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
    use actix_web::ResponseError;
    ApiError::new(actix_web::http::StatusCode::NOT_FOUND, "not_found", "Not found")
        .detail(format!("no route for {} {}", req.method(), req.path()))
        .error_response()
}
