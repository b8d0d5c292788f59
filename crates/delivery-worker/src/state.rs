//! What a worker process's deliveries share with its sweeper.

use std::sync::Arc;
use std::time::Duration;

use hookline_broker::publisher::Broker;
use hookline_domain::crypto::MasterKey;
use hookline_service_kit::caches::Caches;
use hookline_service_kit::config::Settings;
use hookline_service_kit::deps::Connections;
use hookline_service_kit::redis_conn::RedisConn;
use hookline_service_kit::rollups::Rollups;
use hookline_store::db::PgPool;
use tokio_util::sync::CancellationToken;

pub struct WorkerState {
    pub settings: Arc<Settings>,
    pub pool: PgPool,
    /// Flow control shared by the fleet.
    pub redis: RedisConn,
    /// Delay queues, outcomes for alerting, and the next delivery of a lane.
    pub broker: Arc<Broker>,
    /// Opens endpoint secrets to sign with.
    pub master_key: Arc<MasterKey>,
    /// Endpoints, kept until a change is broadcast.
    pub caches: Arc<Caches>,
    /// Attempts per endpoint and hour, flushed in the background.
    pub rollups: Arc<Rollups>,
    pub cancel: CancellationToken,
}

impl WorkerState {
    /// Starts the rollup flusher on the current runtime.
    pub fn new(c: &Connections) -> Arc<Self> {
        let every = Duration::from_secs(c.settings.usage_flush_secs);
        let rollups = Rollups::spawn(c.pool.clone(), every, c.cancel.clone());
        Arc::new(Self {
            settings: c.settings.clone(),
            pool: c.pool.clone(),
            redis: c.redis.clone(),
            broker: c.broker.clone(),
            master_key: c.master_key.clone(),
            caches: c.caches.clone(),
            rollups,
            cancel: c.cancel.clone(),
        })
    }
}
