//! In-process caches in front of Postgres, and how they stay honest.
//!
//! Any change to a key, an endpoint or an event type is announced on one
//! Redis channel (`<prefix>invalidate`, the message names what changed);
//! every instance of every service drops the matching cache at once. While an
//! instance is not subscribed (Redis down, reconnecting) it bypasses its
//! caches entirely, so nothing stale outlives a change by more than a round
//! trip to Postgres.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use hookline_domain::api_key::KeyHash;
use hookline_domain::event::PayloadSchema;
use hookline_store::endpoints::EndpointRow;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::redis_conn::RedisConn;

const CHANNEL: &str = "invalidate";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    Keys,
    Endpoints,
    EventTypes,
}

impl Topic {
    fn as_str(&self) -> &'static str {
        match self {
            Topic::Keys => "keys",
            Topic::Endpoints => "endpoints",
            Topic::EventTypes => "event_types",
        }
    }
}

pub struct Caches {
    pub keys: moka::sync::Cache<KeyHash, Arc<crate::auth::CachedKey>>,
    /// Endpoint rows by id (the worker).
    pub endpoints: moka::sync::Cache<Uuid, Arc<EndpointRow>>,
    /// Subscribed endpoint ids by (org, event type) (ingest fan-out).
    pub fanout: moka::sync::Cache<(Uuid, String), Arc<Vec<Uuid>>>,
    /// Compiled custom schemas by (org, name); `None` when the type does not exist.
    pub event_types: moka::sync::Cache<(Uuid, String), Arc<Option<PayloadSchema>>>,
    subscribed: AtomicBool,
    redis: Option<RedisConn>,
}

impl Caches {
    pub fn new(redis: Option<RedisConn>, ttl: Duration) -> Self {
        let ttl = ttl.max(Duration::from_millis(1));
        Self {
            keys: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            endpoints: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            fanout: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            event_types: moka::sync::Cache::builder().max_capacity(10_000).time_to_live(ttl).build(),
            subscribed: AtomicBool::new(false),
            redis,
        }
    }

    /// Whether the caches may be used (this instance would hear of changes).
    pub fn active(&self) -> bool {
        self.subscribed.load(Ordering::SeqCst)
    }

    fn drop_topic(&self, topic: &str) {
        match topic {
            "keys" => self.keys.invalidate_all(),
            "endpoints" => {
                self.endpoints.invalidate_all();
                self.fanout.invalidate_all();
            }
            "event_types" => self.event_types.invalidate_all(),
            _ => self.drop_all(),
        }
    }

    fn drop_all(&self) {
        self.keys.invalidate_all();
        self.endpoints.invalidate_all();
        self.fanout.invalidate_all();
        self.event_types.invalidate_all();
    }

    /// Drops a cache here and on every other instance.
    pub async fn invalidate(&self, topic: Topic) {
        self.drop_topic(topic.as_str());
        if let Some(redis) = &self.redis {
            let mut conn = redis.manager.clone();
            let published: redis::RedisResult<i64> =
                redis::cmd("PUBLISH").arg(redis.key(CHANNEL)).arg(topic.as_str()).query_async(&mut conn).await;
            if let Err(e) = published {
                tracing::warn!(error = %e, "could not broadcast a cache invalidation; instances bypass their caches while Redis is down");
            }
        }
    }

    /// Listens for invalidations until cancelled, reconnecting as needed.
    pub fn spawn_listener(self: &Arc<Self>, cancel: CancellationToken) {
        let Some(redis) = self.redis.clone() else { return };
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let channel = redis.key(CHANNEL);
            loop {
                let connected = async {
                    let mut pubsub = redis.client.get_async_pubsub().await?;
                    pubsub.subscribe(&channel).await?;
                    Ok::<_, redis::RedisError>(pubsub)
                };
                match tokio::time::timeout(Duration::from_secs(3), connected).await {
                    Ok(Ok(pubsub)) => {
                        // Anything may have changed while we were not listening.
                        this.drop_all();
                        this.subscribed.store(true, Ordering::SeqCst);
                        let mut messages = pubsub.into_on_message();
                        loop {
                            tokio::select! {
                                _ = cancel.cancelled() => return,
                                msg = messages.next() => match msg {
                                    Some(m) => {
                                        let topic: String = m.get_payload().unwrap_or_default();
                                        this.drop_topic(&topic);
                                    }
                                    None => break,
                                }
                            }
                        }
                        this.subscribed.store(false, Ordering::SeqCst);
                        this.drop_all();
                        tracing::warn!("lost the cache invalidation subscription; bypassing caches until it is back");
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "cannot subscribe to invalidations yet"),
                    Err(_) => tracing::debug!("subscribing to invalidations timed out"),
                }
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        });
    }
}
