//! `POST /api/v1/erasures`: erase everything Hookline keeps about one lead.

use crate::state::ControlState;
use actix_web::{web, HttpResponse};
use diesel_async::AsyncConnection;
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::{Auth, Principal};
use hookline_service_kit::error::{ApiError, FieldError, Problem};
use hookline_store::erasure::Scrubbed;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::audit::{self, Actor};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/api/v1/erasures", web::post().to(create_erasure));
}

/// Events looked at per transaction.
const BATCH: i64 = 1000;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureInput {
    /// A JSON pointer into event data, e.g. `/id` or `/email`.
    #[schema(example = "/id")]
    pub path: String,
    /// The value there that names the lead: a string, number or boolean.
    #[schema(value_type = Object, example = "lead_123")]
    pub value: serde_json::Value,
}

/// What was scrubbed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Erased {
    /// Events whose data held the value: their payload and idempotency key are gone.
    pub events: usize,
    /// Their deliveries' attempts: the receivers' answers (body, headers, error) are gone.
    pub attempts: usize,
    /// Their dead letters, scrubbed with the rest.
    pub dead_letters: usize,
}

/// Erase one lead
///
/// Scrubs the data of every event whose data holds `value` at `path`, with
/// their idempotency records, the receivers' answers kept with their
/// attempts, and what their deliveries (dead letters too) kept of the last
/// answer; deliveries still waiting are cancelled. Ids, types, times and
/// counts stay for the audit trail, which records the erasure without the
/// value. Works through the history in batches of 1,000 events.
#[utoipa::path(
    post, path = "/api/v1/erasures", tag = "Erasure",
    request_body = ErasureInput,
    security(("api_key" = ["events:write"])),
    responses(
        (status = 200, description = "Erased; the numbers scrubbed", body = Erased),
        (status = 422, description = "Invalid path or value", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_erasure(
    app: web::Data<ControlState>,
    auth: Auth,
    body: web::Json<ErasureInput>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(erase(&app, &auth, body.into_inner()).await?))
}

/// The keys of a JSON pointer (`/a~1b/0` is `["a/b", "0"]`).
fn pointer_keys(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix('/')?;
    if path.len() > 500 {
        return None;
    }
    Some(rest.split('/').map(|k| k.replace("~1", "/").replace("~0", "~")).collect())
}

pub async fn erase(app: &ControlState, auth: &Principal, input: ErasureInput) -> Result<Erased, ApiError> {
    auth.require(Scope::EventsWrite)?;
    let mut errors = Vec::new();
    let keys = pointer_keys(&input.path);
    if keys.is_none() {
        errors.push(FieldError {
            field: "path".into(),
            message: "must be a JSON pointer into event data, such as /id".into(),
        });
    }
    let scalar = match &input.value {
        serde_json::Value::String(s) => !s.is_empty() && s.len() <= 1000,
        serde_json::Value::Number(_) | serde_json::Value::Bool(_) => true,
        _ => false,
    };
    if !scalar {
        errors.push(FieldError {
            field: "value".into(),
            message: "must be a non-empty string (at most 1000 characters), a number or a boolean".into(),
        });
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(errors));
    }
    let keys = keys.expect("validated");
    let org = auth.org_id.as_uuid();
    let mut total = Scrubbed::default();
    let mut after = None;
    let mut conn = app.conn().await?;
    loop {
        let (done, last) = conn
            .transaction::<_, ApiError, _>(async |c| {
                Ok(hookline_store::erasure::scrub_batch(c, org, &keys, &input.value, after, BATCH).await?)
            })
            .await?;
        total.events += done.events;
        total.attempts += done.attempts;
        total.dead_letters += done.dead_letters;
        match last {
            Some(l) => after = Some(l),
            None => break,
        }
    }
    // The value names the lead: the record keeps only its hash.
    let digest = ring::digest::digest(&ring::digest::SHA256, input.value.to_string().as_bytes());
    audit::record(
        &mut conn,
        auth.org_id,
        Actor::Key(auth),
        "erasure.completed",
        "erasure",
        &input.path,
        json!({"path": input.path, "value_sha256": hex_of(digest.as_ref()), "events": total.events,
               "attempts": total.attempts, "dead_letters": total.dead_letters}),
    )
    .await?;
    Ok(Erased { events: total.events, attempts: total.attempts, dead_letters: total.dead_letters })
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::pointer_keys;

    #[test]
    fn pointers_become_keys() {
        assert_eq!(pointer_keys("/id").unwrap(), ["id"]);
        assert_eq!(pointer_keys("/a~1b/0/c~0d").unwrap(), ["a/b", "0", "c~d"]);
        assert!(pointer_keys("id").is_none() && pointer_keys("").is_none());
    }
}
