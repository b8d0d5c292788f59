//! `GET /api/v1/webhooks/{id}/events`: an endpoint's events read in order,
//! for consumers that cannot receive webhooks (behind a firewall). An
//! endpoint created with `"mode": "pull"` is never pushed to; any endpoint
//! can be read this way.

use crate::state::ControlState;
use actix_web::{web, HttpResponse};
use chrono::{Duration, Utc};
use hookline_domain::filter::Filter;
use hookline_domain::id::{EndpointId, EventId};
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::{Auth, Principal};
use hookline_service_kit::error::{ApiError, Problem};
use hookline_service_kit::pagination::{decode_cursor, encode_cursor};
use serde::{Deserialize, Serialize};

use crate::views::EventBody;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/webhooks/{id}/events", web::get().to(pull_events));
}

/// Events newer than this are not handed out yet: an event accepted a moment
/// earlier may still be committing with a lower id, and a reader must not skip it.
const SETTLE_MS: i64 = 1000;
/// At most this many events are looked at per call (filters may pass few).
const SCAN_MAX: i64 = 5000;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PullParams {
    /// The `next_cursor` of the previous call; omitted, from the endpoint's creation.
    pub after: Option<String>,
    /// 1 to 200 (default 50).
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PullPage {
    /// The endpoint's events after the cursor, oldest first, as deliveries would carry them.
    pub data: Vec<EventBody>,
    /// Where to go on from; call again with it (`after`), now or later.
    /// Null only while the endpoint has had no events.
    pub next_cursor: Option<String>,
}

/// Read an endpoint's events in order
///
/// The events the endpoint subscribes to (and its filter passes), accepted
/// since it was created, oldest first. Poll with the answer's `next_cursor`:
/// an empty `data` means nothing new yet. Events show up about a second after
/// they are accepted.
#[utoipa::path(
    get, path = "/api/v1/webhooks/{id}/events", tag = "Webhooks",
    params(("id" = String, Path, description = "ep_… id"), PullParams),
    security(("api_key" = ["events:read"])),
    responses(
        (status = 200, description = "The next events", body = PullPage),
        (status = 404, description = "No such endpoint", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid cursor or limit", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn pull_events(
    app: web::Data<ControlState>,
    auth: Auth,
    id: web::Path<String>,
    q: web::Query<PullParams>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(pull(&app, &auth, &id, &q).await?))
}

pub async fn pull(app: &ControlState, auth: &Principal, id: &str, q: &PullParams) -> Result<PullPage, ApiError> {
    auth.require(Scope::EventsRead)?;
    let id = EndpointId::parse(id).map_err(|_| ApiError::not_found("webhook endpoint"))?;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid_field("limit", "must be between 1 and 200"));
    }
    let mut after = match &q.after {
        Some(c) => {
            Some(decode_cursor(c).ok_or_else(|| ApiError::invalid_field("after", "is not a cursor this API gave"))?)
        }
        None => None,
    };
    let mut conn = app.conn().await?;
    let ep = hookline_store::endpoints::get(&mut conn, auth.org_id.as_uuid(), id.as_uuid())
        .await?
        .ok_or_else(|| ApiError::not_found("webhook endpoint"))?;
    let filter = ep.filter.as_ref().map(Filter::saved);
    let window = (ep.created_at, Utc::now() - Duration::milliseconds(SETTLE_MS));
    let mut data = Vec::new();
    let mut scanned = 0;
    while (data.len() as i64) < limit && scanned < SCAN_MAX {
        let take = (limit * 4).clamp(100, 1000);
        let rows =
            hookline_store::events::subscribed_after(&mut conn, auth.org_id.as_uuid(), after, window, &ep.events, take)
                .await?;
        let got = rows.len() as i64;
        scanned += got;
        for (event_id, event, at, body) in rows {
            if data.len() as i64 == limit {
                break;
            }
            after = Some(event_id);
            if filter.as_ref().is_none_or(|f| f.matches_event(&event, at, &body)) {
                let timestamp = hookline_domain::event::rfc3339(at);
                data.push(EventBody { event_id: EventId::from_uuid(event_id), event, timestamp, data: body });
            }
        }
        if got < take {
            break;
        }
    }
    Ok(PullPage { data, next_cursor: after.map(encode_cursor) })
}
