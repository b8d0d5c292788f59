//! What the control API's handlers share.

use std::sync::Arc;

use hookline_broker::publisher::Broker;
use hookline_domain::crypto::MasterKey;
use hookline_service_kit::auth::AuthState;
use hookline_service_kit::caches::Caches;
use hookline_service_kit::config::Settings;
use hookline_service_kit::deps::Connections;
use hookline_service_kit::error::ApiError;
use hookline_service_kit::redis_conn::RedisConn;
use hookline_store::db::{PgPool, PooledConn};
use tokio_util::sync::CancellationToken;

pub struct ControlState {
    pub settings: Arc<Settings>,
    pub pool: PgPool,
    /// Endpoint flow state (read for the health view).
    pub redis: RedisConn,
    /// Replays and backfills publish delivery tasks.
    pub broker: Arc<Broker>,
    /// Seals endpoint secrets and Slack URLs.
    pub master_key: Arc<MasterKey>,
    /// Changes here are broadcast to every instance's caches.
    pub caches: Arc<Caches>,
    pub auth: Arc<AuthState>,
    pub cancel: CancellationToken,
}

impl ControlState {
    pub fn new(c: &Connections, auth: Arc<AuthState>) -> Arc<Self> {
        Arc::new(Self {
            settings: c.settings.clone(),
            pool: c.pool.clone(),
            redis: c.redis.clone(),
            broker: c.broker.clone(),
            master_key: c.master_key.clone(),
            caches: c.caches.clone(),
            auth,
            cancel: c.cancel.clone(),
        })
    }

    pub async fn conn(&self) -> Result<PooledConn, ApiError> {
        self.pool.get().await.map_err(ApiError::from_pool)
    }
}
