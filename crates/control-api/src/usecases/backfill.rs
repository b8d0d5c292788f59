//! Backfills: past events delivered to an endpoint, a batch at a time beside live traffic.

use chrono::Utc;
use hookline_domain::event::EventType;
use hookline_domain::id::{BackfillId, EndpointId};
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::Principal;
use hookline_service_kit::error::{ApiError, FieldError};
use hookline_service_kit::storable::time_in_range;
use hookline_store::backfill::BackfillRow;
use serde_json::json;

use super::change;
use crate::audit::Actor;
use crate::routes::backfill::{BackfillInput, BackfillView};
use crate::state::ControlState;

/// Starts a backfill of an enabled push endpoint over the window.
pub async fn create(
    app: &ControlState,
    auth: &Principal,
    id: EndpointId,
    input: BackfillInput,
) -> Result<BackfillView, ApiError> {
    auth.require(Scope::DeliveriesRetry)?;
    time_in_range("since", Some(input.since))?;
    time_in_range("until", input.until)?;
    let until = input.until.unwrap_or_else(Utc::now);
    let mut errors = Vec::new();
    if input.since >= until {
        errors.push(FieldError { field: "since".into(), message: "must be before until".into() });
    }
    if let Some(types) = &input.events {
        if types.is_empty() || types.len() > 100 {
            errors.push(FieldError { field: "events".into(), message: "must name 1 to 100 event types".into() });
        }
        for (i, t) in types.iter().enumerate() {
            if t != "*" {
                if let Err(e) = EventType::parse(t) {
                    errors.push(FieldError { field: format!("events[{i}]"), message: e.to_string() });
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let mut conn = app.conn().await?;
    let row = change(&mut conn, &app.caches, Actor::Key(auth), async |c, trail| {
            let ep = hookline_store::endpoints::get(c, auth.org_id, id)
                .await?
                .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
            if ep.mode == "pull" {
                return Err(ApiError::conflict(
                    "pull_endpoint",
                    "a pull endpoint reads its past events itself (GET /api/v1/webhooks/{id}/events)",
                ));
            }
            if !ep.is_active {
                return Err(ApiError::conflict("endpoint_inactive", "the endpoint is disabled; enable it first"));
            }
            let now = Utc::now();
            let row = BackfillRow {
                id: BackfillId::new().as_uuid(),
                org_id: auth.org_id.as_uuid(),
                endpoint_id: ep.id,
                since: input.since,
                until,
                events: input.events.clone(),
                state: "running".into(),
                cursor: None,
                scanned: 0,
                enqueued: 0,
                created_by_key_id: Some(auth.key_id.as_uuid()),
                created_at: now,
                updated_at: now,
                finished_at: None,
            };
            let row = hookline_store::backfill::insert(c, &row).await?;
            trail.audit(auth.org_id, "webhook.backfill_started", "webhook", id, json!({"backfill_id": BackfillId::from_uuid(row.id), "since": row.since, "until": row.until, "events": row.events}));
            Ok(row)
        })
        .await?;
    Ok(row.into())
}

pub async fn get(
    app: &ControlState,
    auth: &Principal,
    ep: EndpointId,
    job: BackfillId,
) -> Result<BackfillView, ApiError> {
    auth.require(Scope::DeliveriesRead)?;
    let mut conn = app.conn().await?;
    let row = hookline_store::backfill::get(&mut conn, auth.org_id, ep, job)
        .await?
        .ok_or_else(|| ApiError::not_found("backfill"))?;
    Ok(BackfillView::from(row))
}
