//! What a filter would have let through, run over the organisation's latest events.

use hookline_domain::filter::{Body, Filter};
use hookline_domain::id::EventId;
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::Principal;
use hookline_service_kit::error::{ApiError, FieldError};

use crate::routes::filter_preview::{FilterPreview, FilterPreviewInput, DEFAULT_LIMIT, MAX_LIMIT};
use crate::state::ControlState;
use crate::views::EventBody;

const SAMPLES: usize = 10;

pub async fn preview(
    app: &ControlState,
    auth: &Principal,
    input: FilterPreviewInput,
) -> Result<FilterPreview, ApiError> {
    auth.require(Scope::WebhooksRead)?;
    auth.require(Scope::EventsRead)?;
    let mut errors = Vec::new();
    let filter = Filter::parse(&input.filter, "filter")
        .map_err(|errs| errors.extend(errs.into_iter().map(|e| FieldError { field: e.field, message: e.message })))
        .ok();
    let limit = input.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        errors.push(FieldError { field: "limit".into(), message: format!("must be between 1 and {MAX_LIMIT}") });
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let filter = filter.expect("validated");
    let rows = {
        let mut conn = app.conn().await?;
        hookline_store::events::recent(&mut conn, auth.org_id.as_uuid(), input.event.as_deref(), limit).await?
    };
    let scanned = rows.len();
    let mut matched = 0;
    let mut samples = Vec::new();
    for (id, event, at, data) in rows {
        let timestamp = hookline_domain::event::rfc3339(at);
        if filter.matches(&Body { event: &event, timestamp: &timestamp, data: &data }) {
            matched += 1;
            if samples.len() < SAMPLES {
                samples.push(EventBody { event_id: EventId::from_uuid(id), event, timestamp, data });
            }
        }
    }
    Ok(FilterPreview { scanned, matched, samples })
}
