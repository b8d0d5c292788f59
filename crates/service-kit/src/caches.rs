//! In-process caches in front of Postgres, and how they stay honest.
//!
//! Any change to a key, an endpoint or an event type is announced on one
//! Redis channel (`<prefix>invalidate`, the message names what changed and
//! whose it is); every instance of every service drops the matching entries
//! at once, and only those. While an
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

/// What changed. Each names its organisation, so a change drops only that
/// tenant's entries: another tenant's cached keys and endpoints stay warm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// An organisation's keys, or its own settings, which each of its keys carries.
    Keys(Uuid),
    /// One endpoint; its organisation's fan-out lists change with it.
    Endpoint { org: Uuid, id: Uuid },
    /// An organisation's event types.
    EventTypes(Uuid),
}

impl Topic {
    /// The message on the channel: `keys <org>`, `endpoint <org> <id>`, `event_types <org>`.
    fn encode(&self) -> String {
        match self {
            Topic::Keys(org) => format!("keys {org}"),
            Topic::Endpoint { org, id } => format!("endpoint {org} {id}"),
            Topic::EventTypes(org) => format!("event_types {org}"),
        }
    }

    /// None for a message this version cannot read: the caller drops everything.
    fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split(' ');
        let kind = parts.next()?;
        let org = parts.next()?.parse().ok()?;
        let topic = match kind {
            "keys" => Topic::Keys(org),
            "endpoint" => Topic::Endpoint { org, id: parts.next()?.parse().ok()? },
            "event_types" => Topic::EventTypes(org),
            _ => return None,
        };
        parts.next().is_none().then_some(topic)
    }
}

/// The active endpoints subscribed to an event type, and the filters and orderings some of them have.
#[derive(Debug, Default)]
pub struct Fanout {
    pub ids: Arc<Vec<Uuid>>,
    /// Positions in `ids` of the endpoints with a filter, and their filters.
    pub filters: Vec<(usize, hookline_domain::filter::Filter)>,
    /// The endpoints that order their deliveries, and how.
    pub orderings: Vec<(Uuid, hookline_domain::ordering::Ordering)>,
}

impl Fanout {
    pub fn new(rows: Vec<hookline_store::endpoints::Subscriber>) -> Self {
        let filters = rows
            .iter()
            .enumerate()
            .filter_map(|(i, (_, f, _))| f.as_ref().map(|f| (i, hookline_domain::filter::Filter::saved(f))))
            .collect();
        let orderings = rows
            .iter()
            .filter_map(|(id, _, o)| {
                let o = hookline_domain::ordering::Ordering::parse(o.as_ref()?, "ordering").ok()?;
                Some((*id, o))
            })
            .collect();
        Self { ids: Arc::new(rows.into_iter().map(|(id, _, _)| id).collect()), filters, orderings }
    }

    /// The event's lane at each ordered endpoint among `endpoints` (those it goes to).
    pub fn lanes(&self, endpoints: &[Uuid], data: &serde_json::Value) -> Vec<(Uuid, String)> {
        self.orderings
            .iter()
            .filter(|(id, _)| endpoints.contains(id))
            .filter_map(|(id, o)| Some((*id, o.lane_of(data)?)))
            .collect()
    }

    /// The endpoints an event goes to: all of them (shared, nothing computed)
    /// unless some filter leaves one out.
    pub fn matching(
        &self,
        event_type: &str,
        occurred_at: chrono::DateTime<chrono::Utc>,
        data: &serde_json::Value,
    ) -> Arc<Vec<Uuid>> {
        if self.filters.is_empty() {
            return self.ids.clone();
        }
        let left_out: Vec<usize> = self
            .filters
            .iter()
            .filter(|(_, f)| !f.matches_event(event_type, occurred_at, data))
            .map(|(i, _)| *i)
            .collect();
        if left_out.is_empty() {
            return self.ids.clone();
        }
        Arc::new(self.ids.iter().enumerate().filter(|(i, _)| !left_out.contains(i)).map(|(_, id)| *id).collect())
    }
}

pub struct Caches {
    pub keys: moka::sync::Cache<KeyHash, Arc<crate::auth::CachedKey>>,
    /// Endpoint rows by id (the worker).
    pub endpoints: moka::sync::Cache<Uuid, Arc<EndpointRow>>,
    /// Subscribed endpoints and their filters by (org, event type) (ingest fan-out).
    pub fanout: moka::sync::Cache<(Uuid, String), Arc<Fanout>>,
    /// Compiled custom schemas by (org, name); `None` when the type does not exist.
    pub event_types: moka::sync::Cache<(Uuid, String), Arc<Option<PayloadSchema>>>,
    subscribed: AtomicBool,
    redis: Option<RedisConn>,
}

impl Caches {
    pub fn new(redis: Option<RedisConn>, ttl: Duration) -> Self {
        let ttl = ttl.max(Duration::from_millis(1));
        Self {
            keys: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build(),
            endpoints: moka::sync::Cache::builder().max_capacity(100_000).time_to_live(ttl).build(),
            fanout: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build(),
            event_types: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build(),
            subscribed: AtomicBool::new(false),
            redis,
        }
    }

    /// Whether the caches may be used (this instance would hear of changes).
    pub fn active(&self) -> bool {
        self.subscribed.load(Ordering::SeqCst)
    }

    /// Drops the entries `topic` names. Reads after this never return an
    /// entry cached before it (moka applies the predicates on read).
    fn drop_topic(&self, topic: Topic) {
        let dropped = match topic {
            Topic::Keys(org) => self.keys.invalidate_entries_if(move |_, k| k.org_uuid() == org).map(drop),
            Topic::Endpoint { org, id } => {
                self.endpoints.invalidate(&id);
                self.fanout.invalidate_entries_if(move |(o, _), _| *o == org).map(drop)
            }
            Topic::EventTypes(org) => self.event_types.invalidate_entries_if(move |(o, _), _| *o == org).map(drop),
        };
        if dropped.is_err() {
            self.drop_all();
        }
    }

    fn drop_all(&self) {
        self.keys.invalidate_all();
        self.endpoints.invalidate_all();
        self.fanout.invalidate_all();
        self.event_types.invalidate_all();
    }

    /// Drops what `topic` names here and on every other instance.
    pub async fn invalidate(&self, topic: Topic) {
        self.drop_topic(topic);
        if let Some(redis) = &self.redis {
            let mut conn = redis.manager.clone();
            let published: redis::RedisResult<i64> =
                redis::cmd("PUBLISH").arg(redis.key(CHANNEL)).arg(topic.encode()).query_async(&mut conn).await;
            if let Err(e) = published {
                tracing::warn!(error = %e, "could not broadcast a cache invalidation; instances bypass their caches while Redis is down");
            }
        }
    }

    /// Applies a message heard on the channel.
    fn heard(&self, message: &str) {
        match Topic::decode(message) {
            Some(topic) => self.drop_topic(topic),
            None => self.drop_all(),
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
                                        let message: String = m.get_payload().unwrap_or_default();
                                        this.heard(&message);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_travel_as_text_and_unknown_text_is_refused() {
        let (org, id) = (Uuid::new_v4(), Uuid::new_v4());
        for t in [Topic::Keys(org), Topic::Endpoint { org, id }, Topic::EventTypes(org)] {
            assert_eq!(Topic::decode(&t.encode()), Some(t));
        }
        for bad in ["keys", "endpoints", "keys nope", &format!("endpoint {org}"), &format!("keys {org} extra")] {
            assert_eq!(Topic::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_change_drops_only_its_organisations_entries() {
        let caches = Caches::new(None, Duration::from_secs(60));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        for org in [a, b] {
            caches.fanout.insert((org, "new_lead".into()), Arc::new(Fanout::default()));
            caches.event_types.insert((org, "custom".into()), Arc::new(None));
        }
        caches.drop_topic(Topic::Endpoint { org: a, id: Uuid::new_v4() });
        caches.drop_topic(Topic::EventTypes(a));
        assert!(caches.fanout.get(&(a, "new_lead".into())).is_none());
        assert!(caches.event_types.get(&(a, "custom".into())).is_none());
        assert!(caches.fanout.get(&(b, "new_lead".into())).is_some());
        assert!(caches.event_types.get(&(b, "custom".into())).is_some());
    }
}
