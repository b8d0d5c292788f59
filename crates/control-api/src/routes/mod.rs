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
pub mod me;
pub mod orgs;
pub mod portal_sessions;
pub mod pull;
pub mod webhooks;

use hookline_domain::scope::Scope;
use hookline_service_kit::auth::Principal;
use hookline_service_kit::error::ApiError;

/// A path's id, answered after the caller's scope: a caller without the
/// scope is refused (403) whatever id it sent.
pub fn scoped<T>(auth: &Principal, scope: Scope, id: Result<T, ApiError>) -> Result<T, ApiError> {
    auth.require(scope)?;
    id
}
