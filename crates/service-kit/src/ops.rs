//! `/health` (the process is alive) and `/ready` (its dependencies answer),
//! mounted by every server, and `/metrics` (Prometheus text format), served
//! only on the operations listener so it never passes the public gateway.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use futures_util::future::BoxFuture;
use hookline_broker::publisher::Broker;
use hookline_store::db::PgPool;
use serde_json::{json, Map, Value};

use crate::metrics::DEPENDENCY_UP;
use crate::ratelimit::RateLimiter;
use crate::redis_conn::RedisConn;

/// Extra detail a service adds to `/ready` (the outbox lag, say): a name and
/// a JSON value. It never makes the service unready by itself.
pub type Detail = Arc<dyn Fn() -> BoxFuture<'static, (String, Value)> + Send + Sync>;

#[derive(Clone, Default)]
pub struct Probes {
    pub pool: Option<PgPool>,
    pub broker: Option<Arc<Broker>>,
    pub redis: Option<RedisConn>,
    pub limiter: Option<Arc<RateLimiter>>,
    pub details: Vec<Detail>,
}

impl Probes {
    pub fn for_kit(kit: &crate::kit::Kit) -> Self {
        Self {
            pool: Some(kit.pool.clone()),
            broker: Some(kit.broker.clone()),
            redis: Some(kit.redis.clone()),
            limiter: Some(kit.limiter.clone()),
            details: Vec::new(),
        }
    }
}

/// The probes, for the public listener.
pub fn configure_probes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health)).route("/ready", web::get().to(ready));
}

/// The probes and `/metrics`, for the operations listener.
pub fn configure(cfg: &mut web::ServiceConfig) {
    configure_probes(cfg);
    cfg.route("/metrics", web::get().to(metrics));
}

/// Binds the operations listener at `addr`.
pub fn bind(addr: std::net::SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(addr)
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e} (set HOOKLINE_OPS_LISTEN)"))
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

async fn check(name: &str, fut: impl std::future::Future<Output = anyhow::Result<()>>) -> (bool, Value) {
    let result = tokio::time::timeout(Duration::from_secs(2), fut).await;
    let (ok, v) = match result {
        Ok(Ok(())) => (true, json!({"status": "up"})),
        // The cause goes to the log: callers of /ready are not authenticated.
        Ok(Err(e)) => {
            tracing::warn!(dependency = name, error = format!("{e:#}"), "readiness check failed");
            (false, json!({"status": "down", "error": "unreachable"}))
        }
        Err(_) => (false, json!({"status": "down", "error": "timed out after 2 s"})),
    };
    DEPENDENCY_UP.with_label_values(&[name]).set(i64::from(ok));
    (ok, v)
}

async fn ready(probes: web::Data<Probes>) -> HttpResponse {
    let pg = async {
        match &probes.pool {
            Some(p) => Some(check("postgres", hookline_store::db::ping(p)).await),
            None => None,
        }
    };
    let mq = async {
        match &probes.broker {
            Some(b) => Some(check("rabbitmq", b.ping()).await),
            None => None,
        }
    };
    let rd = async {
        match &probes.redis {
            Some(r) => Some(check("redis", r.ping()).await),
            None => None,
        }
    };
    let (pg, mq, rd) = tokio::join!(pg, mq, rd);
    let mut checks = Map::new();
    let mut down = Vec::new();
    for (name, result) in [("postgres", pg), ("rabbitmq", mq), ("redis", rd)] {
        if let Some((ok, v)) = result {
            if !ok {
                down.push(name);
            }
            checks.insert(name.into(), v);
        }
    }
    let mut body = Map::new();
    if let Some(l) = &probes.limiter {
        body.insert("rate_limiter".into(), json!({"mode": if l.is_degraded() { "local" } else { "redis" }}));
    }
    for d in &probes.details {
        let (k, v) = d().await;
        body.insert(k, v);
    }
    body.insert("checks".into(), Value::Object(checks));
    if down.is_empty() {
        body.insert("status".into(), json!("ready"));
        HttpResponse::Ok().json(Value::Object(body))
    } else {
        body.insert("status".into(), json!("unavailable"));
        body.insert("detail".into(), json!(format!("unreachable: {}", down.join(", "))));
        body.insert("unavailable".into(), json!(down));
        HttpResponse::ServiceUnavailable().json(Value::Object(body))
    }
}

async fn metrics() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(crate::metrics::render())
}

/// Serves only `/health`, `/ready` and `/metrics` until `cancel` fires: the
/// operations listener of every service, and the only one of the worker and
/// the alerting service.
pub fn serve_ops(
    probes: Probes,
    listener: std::net::TcpListener,
    cancel: tokio_util::sync::CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let probes = web::Data::new(probes);
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .wrap(actix_web::middleware::from_fn(crate::metrics::http_metrics))
            .app_data(probes.clone())
            .configure(configure)
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(5)
    .listen(listener)?
    .run();
    let handle = server.handle();
    Ok(tokio::spawn(async move {
        tokio::select! {
            r = server => { if let Err(e) = r { tracing::error!(error = %e, "ops server failed"); } }
            _ = cancel.cancelled() => { handle.stop(true).await; }
        }
    }))
}
