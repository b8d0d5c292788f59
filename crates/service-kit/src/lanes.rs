//! Publishing the delivery a lane release made head (see
//! `hookline_store::lanes`), for the worker and ingest alike.

use anyhow::Context as _;
use chrono::Utc;
use hookline_broker::messages::DeliveryTask;
use hookline_broker::publisher::Broker;
use hookline_domain::id::{DeliveryId, EndpointId, EventId, OrgId};
use hookline_domain::status::OutboxReason;
use hookline_store::db::PgPool;
use hookline_store::lanes::Released;
use uuid::Uuid;

/// The work message for a released head: its first attempt.
pub fn task_of(next: &Released) -> DeliveryTask {
    DeliveryTask::fresh(
        DeliveryId::from_uuid(next.next_id),
        OrgId::from_uuid(next.org_id),
        EndpointId::from_uuid(next.endpoint_id),
        EventId::from_uuid(next.event_id),
        next.event_type.clone(),
        Utc::now().timestamp_millis(),
    )
}

/// Kicks the lanes (endpoint, lane) a committed write put deliveries in
/// (see `hookline_store::lanes::kick`) and publishes the heads it moved on
/// to. A kick that fails leaves settled heads, which the sweeper releases.
pub async fn kick(broker: &Broker, pool: &PgPool, lanes: &[(Uuid, String)]) {
    let kicked = async {
        let mut conn = pool.get().await.context("database pool")?;
        hookline_store::lanes::kick(&mut conn, lanes).await.context("kicking lanes")
    };
    match kicked.await {
        Ok(released) => hand_on(broker, pool, &released).await,
        Err(e) => tracing::warn!(error = format!("{e:#}"), "lanes are left to the sweeper"),
    }
}

/// Publishes released heads to the work queue; those the broker refuses go
/// through the outbox. Any left unpublished (this process stops, or Postgres
/// refuses too) are still pending and unattempted: the sweeper queues them.
pub async fn hand_on(broker: &Broker, pool: &PgPool, released: &[Released]) {
    if let Err(e) = try_hand_on(broker, pool, released).await {
        tracing::warn!(error = format!("{e:#}"), "lanes' next deliveries are left to the sweeper");
    }
}

async fn try_hand_on(broker: &Broker, pool: &PgPool, released: &[Released]) -> anyhow::Result<()> {
    let mut refused = Vec::new();
    for next in released {
        if let Err(e) = broker.publish_task(&task_of(next), None).await {
            tracing::warn!(error = format!("{e:#}"), "a lane's next delivery goes through the outbox");
            refused.push(hookline_store::outbox::NewOutbox {
                org_id: next.org_id,
                delivery_id: Some(next.next_id),
                event_id: None,
                reason: OutboxReason::Fresh,
                attempt: 1,
                traceparent: None,
                publish_after: None,
            });
        }
    }
    if !refused.is_empty() {
        let mut conn = pool.get().await.context("database pool")?;
        hookline_store::outbox::insert(&mut conn, refused).await?;
    }
    Ok(())
}
