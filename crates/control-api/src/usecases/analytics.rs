//! An organisation's delivery numbers over a window, from hourly rollups.

use chrono::{Duration, Utc};
use hookline_domain::id::EndpointId;
use hookline_service_kit::error::ApiError;
use hookline_store::rollups::{DeliveryGroup, EventGroup};

use crate::routes::analytics::{
    empty, Analytics, EndpointFigures, EndpointHealthCounts, EventTypeFigures, Figures, Point, Totals,
};
use crate::state::ControlState;

/// The analytics of an organisation (also used by the admin dashboard).
pub async fn compute(app: &ControlState, org: uuid::Uuid, window: &str) -> Result<Analytics, ApiError> {
    let (span, resolution, group) = match window {
        "24h" => (Duration::hours(24), "1h", "hour"),
        "7d" => (Duration::days(7), "1h", "hour"),
        "30d" => (Duration::days(30), "1d", "day"),
        _ => return Err(ApiError::invalid_field("window", "must be 24h, 7d or 30d")),
    };
    let until = Utc::now();
    let since = until - span;
    let mut conn = app.conn().await?;
    let by_ep = hookline_store::rollups::delivery_groups(&mut conn, org, since, "endpoint").await?;
    let by_type = hookline_store::rollups::delivery_groups(&mut conn, org, since, "event_type").await?;
    let series = hookline_store::rollups::delivery_groups(&mut conn, org, since, group).await?;
    let ev_type = hookline_store::rollups::event_groups(&mut conn, org, since, "event_type").await?;
    let ev_series = hookline_store::rollups::event_groups(&mut conn, org, since, group).await?;
    let counts = hookline_store::rollups::endpoint_counts(&mut conn, org).await?;
    let total = DeliveryGroup::sum("total", &by_ep);
    let hits = hookline_store::rollups::rate_limit_hits(&mut conn, org, since).await?;
    let events_of =
        |groups: &[EventGroup], key: &str| groups.iter().find(|g| g.key == key).map(|g| g.events).unwrap_or(0);
    let mut types: Vec<String> =
        by_type.iter().map(|g| g.key.clone()).chain(ev_type.iter().map(|g| g.key.clone())).collect();
    types.sort();
    types.dedup();
    let mut times: Vec<String> =
        series.iter().map(|g| g.key.clone()).chain(ev_series.iter().map(|g| g.key.clone())).collect();
    times.sort();
    times.dedup();
    let totals = Totals {
        events: ev_type.iter().map(|g| g.events).sum(),
        deliveries: ev_type.iter().map(|g| g.deliveries).sum(),
        rate_limit_hits: hits,
        figures: Figures::from(&total),
    };
    Ok(Analytics {
        total_webhooks: counts.total,
        active_webhooks: counts.active + counts.failing,
        total_deliveries: totals.deliveries,
        success_rate: totals.figures.success_rate,
        average_response_time: totals.figures.average_response_time,
        healthy_webhooks: counts.active,
        failed_webhooks: counts.failing,
        window: window.to_owned(),
        since,
        until,
        resolution: resolution.to_owned(),
        endpoints: EndpointHealthCounts {
            total: counts.total,
            active: counts.active,
            failing: counts.failing,
            disabled: counts.disabled,
        },
        totals,
        by_endpoint: by_ep
            .iter()
            .filter_map(|g| {
                uuid::Uuid::parse_str(&g.key)
                    .ok()
                    .map(|u| EndpointFigures { webhook_id: EndpointId::from_uuid(u), figures: g.into() })
            })
            .collect(),
        by_event_type: types
            .iter()
            .map(|t| EventTypeFigures {
                event_type: t.clone(),
                events: events_of(&ev_type, t),
                figures: by_type.iter().find(|g| &g.key == t).map(Figures::from).unwrap_or_else(empty),
            })
            .collect(),
        series: times
            .iter()
            .map(|t| Point {
                t: t.clone(),
                events: events_of(&ev_series, t),
                figures: series.iter().find(|g| &g.key == t).map(Figures::from).unwrap_or_else(empty),
            })
            .collect(),
    })
}
