//! What the ingest API's handlers and its relay share.

use std::sync::Arc;
use std::time::Duration;

use hookline_broker::publisher::Broker;
use hookline_service_kit::auth::AuthState;
use hookline_service_kit::caches::Caches;
use hookline_service_kit::config::Settings;
use hookline_service_kit::deps::Connections;
use hookline_service_kit::error::ApiError;
use hookline_service_kit::rollups::Rollups;
use hookline_store::db::{PgPool, PooledConn};
use tokio_util::sync::CancellationToken;

use crate::writer::EventWriter;

pub struct IngestState {
    pub settings: Arc<Settings>,
    pub pool: PgPool,
    pub broker: Arc<Broker>,
    /// Event type schemas and endpoint subscriptions.
    pub caches: Arc<Caches>,
    pub auth: Arc<AuthState>,
    /// Events per type and hour, flushed in the background.
    pub rollups: Arc<Rollups>,
    /// Group commit for accepted events.
    pub writer: EventWriter,
    pub cancel: CancellationToken,
}

impl IngestState {
    /// Starts the event writer and the rollup flusher on the current runtime.
    pub fn new(c: &Connections, auth: Arc<AuthState>) -> Arc<Self> {
        let every = Duration::from_secs(c.settings.usage_flush_secs);
        let rollups = Rollups::spawn(c.pool.clone(), every, c.cancel.clone());
        Arc::new(Self {
            settings: c.settings.clone(),
            pool: c.pool.clone(),
            broker: c.broker.clone(),
            caches: c.caches.clone(),
            auth,
            rollups,
            writer: crate::writer::spawn(c.pool.clone(), c.broker.clone()),
            cancel: c.cancel.clone(),
        })
    }

    pub async fn conn(&self) -> Result<PooledConn, ApiError> {
        self.pool.get().await.map_err(ApiError::from_pool)
    }
}
