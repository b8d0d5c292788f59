//! The shared state every service is built on: settings, the Postgres pool,
//! Redis, the broker, the master key, and the auth and rate-limit machinery.

use std::sync::Arc;
use std::time::Duration;

use anyhow::anyhow;
use hookline_broker::publisher::Broker;
use hookline_domain::api_key::KeyPepper;
use hookline_domain::crypto::MasterKey;
use hookline_store::db::{self, PgPool};
use hookline_store::events::NewEvent;
use tokio_util::sync::CancellationToken;

use crate::auth::{key_policy, org_event_policy, Authenticator, Principal};
use crate::caches::Caches;
use crate::config::Settings;
use crate::ratelimit::{Policy, RateLimiter};
use crate::redis_conn::RedisConn;
use crate::rollups::Rollups;
use crate::usage::UsageRecorder;

pub struct Kit {
    pub settings: Settings,
    pub service: &'static str,
    pub pool: PgPool,
    pub redis: RedisConn,
    pub broker: Arc<Broker>,
    pub master_key: Arc<MasterKey>,
    pub caches: Arc<Caches>,
    pub auth: Arc<Authenticator>,
    pub limiter: Arc<RateLimiter>,
    pub usage: Arc<UsageRecorder>,
    pub rollups: Arc<Rollups>,
    /// Cancelled when the process shuts down; background loops watch it.
    pub cancel: CancellationToken,
    /// Group commit for accepted events; the ingest API starts it.
    pub event_writer: std::sync::OnceLock<EventWriter>,
}

/// Writes accepted events in shared transactions (see [`crate::batch`] and
/// the ingest API's `writer`):
/// each event comes back with its delivery count, or is handed back to be
/// written alone (its idempotency key is taken, or the batch failed).
pub type EventWriter = crate::batch::Batcher<NewEvent, Result<usize, NewEvent>>;

/// One line saying what is unreachable and how to start it.
pub fn unreachable_message(what: &str, url: &str, start: &str, var: &str, err: &dyn std::fmt::Display) -> String {
    format!(
        "{what} is not reachable at {} ({err}). Start it ({start}) or point {var} at a running one.",
        db::redact(url)
    )
}

impl Kit {
    /// Connects to everything, failing with one clear line when something is missing.
    pub async fn build(
        settings: Settings,
        service: &'static str,
        cancel: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        crate::metrics::init();
        let master_key = Arc::new(settings.require_master_key()?);
        let pool = db::pool(settings.database_url.expose(), settings.database_pool_size)?;
        db::ping(&pool).await.map_err(|e| {
            anyhow!(unreachable_message(
                "Postgres",
                settings.database_url.expose(),
                "e.g. `pg_ctlcluster 15 main start` or `docker compose up -d postgres`",
                "HOOKLINE_DATABASE_URL",
                &e
            ))
        })?;
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
            anyhow!(unreachable_message(
                "RabbitMQ",
                settings.amqp_url.expose(),
                "e.g. `rabbitmq-server -detached` or `docker compose up -d rabbitmq`",
                "HOOKLINE_AMQP_URL",
                &e
            ))
        })?;
        let pepper = KeyPepper::new(&master_key.derive("hookline api key pepper v1"));
        let caches = Arc::new(Caches::new(Some(redis.clone()), Duration::from_secs(settings.key_cache_ttl_secs)));
        caches.spawn_listener(cancel.clone());
        let limiter = Arc::new(RateLimiter::new(Some(redis.clone()), settings.rate_limit_fail_closed));
        let auth = Arc::new(Authenticator::new(
            pool.clone(),
            pepper,
            caches.clone(),
            limiter.clone(),
            settings.auth_failures_per_minute,
        ));
        let usage = Arc::new(UsageRecorder::default());
        crate::flushing::spawn_flusher(
            usage.clone(),
            pool.clone(),
            Duration::from_secs(settings.usage_flush_secs),
            cancel.clone(),
        );
        let rollups = Arc::new(Rollups::default());
        crate::flushing::spawn_flusher(
            rollups.clone(),
            pool.clone(),
            Duration::from_secs(settings.usage_flush_secs),
            cancel.clone(),
        );
        Ok(Arc::new(Self {
            settings,
            service,
            pool,
            redis,
            broker,
            master_key,
            caches,
            auth,
            limiter,
            usage,
            rollups,
            event_writer: std::sync::OnceLock::new(),
            cancel,
        }))
    }

    /// The rate-limit policies that apply to a caller: the key's limit, and
    /// on event ingest the organisation's event quota, checked together.
    pub fn policies_for(&self, principal: &Principal, ingest: bool) -> Vec<Policy> {
        let mut p = vec![key_policy(principal)];
        if ingest {
            p.extend(org_event_policy(principal));
        }
        p
    }

    pub async fn conn(&self) -> Result<hookline_store::db::PooledConn, crate::error::ApiError> {
        self.pool.get().await.map_err(crate::error::ApiError::from_pool)
    }
}
