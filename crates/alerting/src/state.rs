//! What the alerting service's consumers and scheduler share.

use std::sync::Arc;

use hookline_broker::publisher::Broker;
use hookline_domain::crypto::MasterKey;
use hookline_service_kit::caches::Caches;
use hookline_service_kit::config::Settings;
use hookline_service_kit::deps::Connections;
use hookline_store::db::PgPool;
use tokio_util::sync::CancellationToken;

pub struct AlertingState {
    pub settings: Arc<Settings>,
    pub pool: PgPool,
    /// Read for queue depths.
    pub broker: Arc<Broker>,
    /// Opens sealed Slack URLs.
    pub master_key: Arc<MasterKey>,
    /// Endpoints disabled or paused here are dropped from every cache.
    pub caches: Arc<Caches>,
    pub cancel: CancellationToken,
}

impl AlertingState {
    pub fn new(c: &Connections) -> Arc<Self> {
        Arc::new(Self {
            settings: c.settings.clone(),
            pool: c.pool.clone(),
            broker: c.broker.clone(),
            master_key: c.master_key.clone(),
            caches: c.caches.clone(),
            cancel: c.cancel.clone(),
        })
    }
}
