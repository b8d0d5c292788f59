//! What the control plane does, whoever asks: the JSON API's handlers, the
//! admin UI, the portal and the CLI call these functions with the caller,
//! typed ids and parsed input, so scopes, validation, quotas and the audit
//! log apply the same everywhere. Every change goes through [`change`]: one
//! transaction holding the change and its audit entries, then the caches it
//! touched dropped on every instance.

pub mod alerts;
pub mod analytics;
pub mod audit;
pub mod backfill;
pub mod dead_letters;
pub mod deliveries;
pub mod erasures;
pub mod event_types;
pub mod filter_preview;
pub mod keys;
pub mod orgs;
pub mod portal_sessions;
pub mod pull;
pub mod webhooks;

use diesel_async::{AsyncConnection, AsyncPgConnection, TransactionManager};
use hookline_domain::id::OrgId;
use hookline_service_kit::caches::{Caches, Topic};
use hookline_service_kit::error::ApiError;

use crate::audit::Actor;

/// An id from a path: a malformed one names nothing, so it is not found.
pub fn parse_id<T: std::str::FromStr>(text: &str, what: &'static str) -> Result<T, ApiError> {
    text.parse().map_err(|_| ApiError::not_found(what))
}

/// What a change leaves behind: audit entries written in its transaction,
/// and caches to drop once it has committed.
#[derive(Default)]
pub struct Trail {
    entries: Vec<Entry>,
    topics: Vec<Topic>,
}

struct Entry {
    org: OrgId,
    action: String,
    target_type: &'static str,
    target_id: String,
    details: serde_json::Value,
}

impl Trail {
    /// Records `action` on `target_type` `target_id` in `org`'s audit log.
    pub fn audit(
        &mut self,
        org: OrgId,
        action: impl Into<String>,
        target_type: &'static str,
        target_id: impl ToString,
        details: serde_json::Value,
    ) -> &mut Self {
        self.entries.push(Entry { org, action: action.into(), target_type, target_id: target_id.to_string(), details });
        self
    }

    /// Drops `topic` from every instance's caches after the commit.
    pub fn invalidate(&mut self, topic: Topic) -> &mut Self {
        self.topics.push(topic);
        self
    }
}

type Tm = <AsyncPgConnection as AsyncConnection>::TransactionManager;

/// Runs `apply` in one transaction with the audit entries it leaves on the
/// trail, then drops the caches it named. Nothing is written when `apply`
/// fails, and no cache is dropped before the change is visible.
pub async fn change<R>(
    conn: &mut AsyncPgConnection,
    caches: &Caches,
    actor: Actor<'_>,
    apply: impl AsyncFnOnce(&mut AsyncPgConnection, &mut Trail) -> Result<R, ApiError>,
) -> Result<R, ApiError> {
    let mut trail = Trail::default();
    Tm::begin_transaction(conn).await?;
    let result = async {
        let r = apply(&mut *conn, &mut trail).await?;
        for e in trail.entries.drain(..) {
            crate::audit::record(conn, e.org, actor, &e.action, e.target_type, &e.target_id, e.details).await?;
        }
        Ok::<_, ApiError>(r)
    }
    .await;
    let r = match result {
        Ok(r) => {
            Tm::commit_transaction(conn).await?;
            r
        }
        Err(e) => {
            if let Err(rollback) = Tm::rollback_transaction(conn).await {
                tracing::warn!(error = %rollback, "rolling back a failed change failed");
            }
            return Err(e);
        }
    };
    for topic in trail.topics {
        caches.invalidate(topic).await;
    }
    Ok(r)
}
