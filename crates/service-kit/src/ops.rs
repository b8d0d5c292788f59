//! `/health` (the process is alive, and which dependencies are degraded)
//! and `/ready` (what this service needs answers), mounted by every server,
//! and `/metrics` (Prometheus text format), served only on the operations
//! listener so it never passes the public gateway.

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

/// How often the background probe checks every dependency.
const WATCH_EVERY: Duration = Duration::from_secs(5);

/// What `/ready` checks. Postgres is always needed; RabbitMQ only where the
/// service cannot do its job without it (the worker, alerting). A service
/// that rides out a dependency's absence (the APIs: a local rate limiter
/// without Redis, the outbox without RabbitMQ) stays ready and reports the
/// dependency as degraded.
#[derive(Clone, Default)]
pub struct Probes {
    pub pool: Option<PgPool>,
    pub broker: Option<Arc<Broker>>,
    pub redis: Option<RedisConn>,
    pub limiter: Option<Arc<RateLimiter>>,
    pub details: Vec<Detail>,
    /// Whether the service is unready without RabbitMQ.
    pub needs_broker: bool,
    /// The dependencies the background probe last found down.
    down: Arc<std::sync::Mutex<Vec<&'static str>>>,
    watching: Arc<std::sync::atomic::AtomicBool>,
}

impl Probes {
    /// Postgres, RabbitMQ and Redis checked; only Postgres needed.
    pub fn new(c: &crate::deps::Connections) -> Self {
        Self {
            pool: Some(c.pool.clone()),
            broker: Some(c.broker.clone()),
            redis: Some(c.redis.clone()),
            ..Self::default()
        }
    }

    /// The same, for a service that cannot work without RabbitMQ.
    pub fn needing_broker(c: &crate::deps::Connections) -> Self {
        Self { needs_broker: true, ..Self::new(c) }
    }

    /// Reports whether the rate limiter fell back to counting locally.
    pub fn with_limiter(mut self, limiter: Arc<RateLimiter>) -> Self {
        self.limiter = Some(limiter);
        self
    }

    fn needed(&self, dependency: &str) -> bool {
        dependency == "postgres" || (dependency == "rabbitmq" && self.needs_broker)
    }

    /// Every dependency checked at once: (name, reachable, what `/ready` shows).
    async fn check_all(&self) -> Vec<(&'static str, bool, Value)> {
        let pg = async {
            match &self.pool {
                Some(p) => Some(check("postgres", hookline_store::db::ping(p)).await),
                None => None,
            }
        };
        let mq = async {
            match &self.broker {
                Some(b) => Some(check("rabbitmq", b.ping()).await),
                None => None,
            }
        };
        let rd = async {
            match &self.redis {
                Some(r) => Some(check("redis", r.ping()).await),
                None => None,
            }
        };
        let (pg, mq, rd) = tokio::join!(pg, mq, rd);
        [("postgres", pg), ("rabbitmq", mq), ("redis", rd)]
            .into_iter()
            .filter_map(|(name, r)| r.map(|(ok, v)| (name, ok, v)))
            .collect()
    }

    /// Checks the dependencies every few seconds until `cancel` fires, so
    /// `hookline_dependency_up` and `/health` stay current whether or not
    /// anyone calls `/ready`. Once per process, however many listeners.
    pub fn watch(&self, cancel: tokio_util::sync::CancellationToken) {
        if self.watching.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let down: Vec<&'static str> =
                    this.check_all().await.into_iter().filter(|(_, ok, _)| !ok).map(|(name, _, _)| name).collect();
                *this.down.lock().expect("probe lock") = down;
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(WATCH_EVERY) => {}
                }
            }
        });
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

/// The process is alive; `degraded` names the dependencies the background
/// probe last found down (the process may still be ready without them).
async fn health(probes: web::Data<Probes>) -> HttpResponse {
    let down = probes.down.lock().expect("probe lock").clone();
    let mut body = json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")});
    if !down.is_empty() {
        body["degraded"] = json!(down);
    }
    HttpResponse::Ok().json(body)
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

/// 200 when every dependency this service needs answers, naming any other
/// that does not as degraded; 503 naming the needed ones that do not.
async fn ready(probes: web::Data<Probes>) -> HttpResponse {
    let mut checks = Map::new();
    let (mut down, mut degraded) = (Vec::new(), Vec::new());
    for (name, ok, v) in probes.check_all().await {
        if !ok {
            if probes.needed(name) {
                down.push(name);
            } else {
                degraded.push(name);
            }
        }
        checks.insert(name.into(), v);
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
    if !degraded.is_empty() {
        body.insert("degraded".into(), json!(degraded));
    }
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
    probes.watch(cancel.clone());
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
