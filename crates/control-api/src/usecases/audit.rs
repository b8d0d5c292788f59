//! The audit log, read.

use hookline_domain::id::KeyId;
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::Principal;
use hookline_service_kit::error::ApiError;
use hookline_service_kit::pagination::{ListResponse, PageParams};
use hookline_store::audit::AuditFilter;

use crate::routes::audit::AuditParams;
use crate::state::ControlState;
use crate::views::AuditView;

pub async fn list(app: &ControlState, auth: &Principal, q: &AuditParams) -> Result<ListResponse<AuditView>, ApiError> {
    auth.require(Scope::AuditRead)?;
    let (limit, before) = PageParams { limit: q.limit, cursor: q.cursor.clone() }.resolve()?;
    let actor_key_id = match q.actor_key_id.as_deref() {
        Some(k) => Some(KeyId::parse(k).map_err(|e| ApiError::invalid_field("actor_key_id", e.to_string()))?.as_uuid()),
        None => None,
    };
    let filter = AuditFilter { action: q.action.clone(), target_id: q.target_id.clone(), actor_key_id };
    let mut conn = app.conn().await?;
    let page = hookline_store::audit::list(&mut conn, auth.org_id.as_uuid(), &filter, before, limit).await?;
    let last = page.items.last().map(|e| e.id);
    let data = page.items.into_iter().map(AuditView::from).collect();
    Ok(ListResponse::new(data, page.has_more, last))
}
