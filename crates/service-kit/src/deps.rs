//! The connections a process opens once and lends to the services it runs:
//! Postgres, Redis, RabbitMQ, the master key and the invalidated caches.
//! Each service builds its own state from these and its settings; nothing
//! here is specific to one service.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use hookline_broker::publisher::Broker;
use hookline_domain::crypto::MasterKey;
use hookline_store::db::{self, PgPool};
use tokio_util::sync::CancellationToken;

use crate::caches::Caches;
use crate::config::Settings;
use crate::redis_conn::RedisConn;

#[derive(Clone)]
pub struct Connections {
    pub settings: Arc<Settings>,
    pub pool: PgPool,
    pub redis: RedisConn,
    pub broker: Arc<Broker>,
    pub master_key: Arc<MasterKey>,
    /// Caches dropped on a Redis broadcast: shared so that a change made by
    /// one service in this process is seen at once by the others.
    pub caches: Arc<Caches>,
    /// Cancelled when the process shuts down; background loops watch it.
    pub cancel: CancellationToken,
}

/// One line saying what is unreachable and how to start it.
pub fn unreachable_message(what: &str, url: &str, start: &str, var: &str, err: &dyn std::fmt::Display) -> String {
    format!(
        "{what} is not reachable at {} ({err}). Start it ({start}) or point {var} at a running one.",
        db::redact(url)
    )
}

/// The line saying Postgres at `url` cannot be reached, and how to start it.
pub fn postgres_unreachable(url: &str, err: &dyn std::fmt::Display) -> anyhow::Error {
    anyhow!(unreachable_message(
        "Postgres",
        url,
        "e.g. `pg_ctlcluster 15 main start` or `docker compose up -d postgres`",
        "HOOKLINE_DATABASE_URL",
        err
    ))
}

impl Connections {
    /// Connects to everything, failing with one clear line when something is missing.
    pub async fn open(settings: Settings, service: &'static str, cancel: CancellationToken) -> anyhow::Result<Self> {
        crate::metrics::init();
        let master_key = Arc::new(settings.require_master_key()?);
        let pool = db::pool(settings.database_url.expose(), settings.database_pool_size)?;
        db::ping(&pool).await.map_err(|e| postgres_unreachable(settings.database_url.expose(), &e))?;
        let redis = RedisConn::connect(settings.redis_url.expose(), &settings.redis_prefix).await.map_err(|e| {
            anyhow!(unreachable_message(
                "Redis",
                settings.redis_url.expose(),
                "e.g. `redis-server --daemonize yes` or `docker compose up -d redis`",
                "HOOKLINE_REDIS_URL",
                &e
            ))
        })?;
        let broker = Arc::new(Broker::new(settings.amqp_url.expose(), &format!("hookline-{service}")));
        broker.ping().await.map_err(|e| {
            let nodes: Vec<String> =
                hookline_broker::publisher::nodes(settings.amqp_url.expose()).into_iter().map(db::redact).collect();
            anyhow!(unreachable_message(
                "RabbitMQ",
                &nodes.join(","),
                "e.g. `rabbitmq-server -detached` or `docker compose up -d rabbitmq`",
                "HOOKLINE_AMQP_URL",
                &e
            ))
        })?;
        let caches = Arc::new(Caches::new(Some(redis.clone()), Duration::from_secs(settings.key_cache_ttl_secs)));
        caches.spawn_listener(cancel.clone());
        Ok(Self { settings: Arc::new(settings), pool, redis, broker, master_key, caches, cancel })
    }
}
