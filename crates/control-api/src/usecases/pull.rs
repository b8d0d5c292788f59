//! Reading an endpoint's events in order, for consumers that cannot receive webhooks.

use chrono::{Duration, Utc};
use hookline_domain::filter::Filter;
use hookline_domain::id::{EndpointId, EventId};
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::Principal;
use hookline_service_kit::error::ApiError;
use hookline_service_kit::pagination::{decode_cursor, encode_cursor};

use crate::routes::pull::{PullPage, PullParams};
use crate::state::ControlState;
use crate::views::EventBody;

/// Events newer than this are not handed out yet: an event accepted a moment
/// earlier may still be committing with a lower id, and a reader must not skip it.
const SETTLE_MS: i64 = 1000;

/// At most this many events are looked at per call (filters may pass few).
const SCAN_MAX: i64 = 5000;

/// The endpoint's events after the cursor, oldest first, that its subscription and filter let through.
pub async fn pull(app: &ControlState, auth: &Principal, id: EndpointId, q: &PullParams) -> Result<PullPage, ApiError> {
    auth.require(Scope::EventsRead)?;
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
    let ep = hookline_store::endpoints::get(&mut conn, auth.org_id, id)
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
