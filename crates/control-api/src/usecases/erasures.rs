//! Erasure: everything Hookline keeps about one lead, scrubbed.

use diesel_async::AsyncConnection;
use hookline_domain::scope::Scope;
use hookline_service_kit::auth::Principal;
use hookline_service_kit::error::{ApiError, FieldError};
use hookline_store::erasure::Scrubbed;
use serde_json::json;

use super::change;
use crate::audit::Actor;
use crate::routes::erasures::{Erased, ErasureInput};
use crate::state::ControlState;

/// Events looked at per transaction.
const BATCH: i64 = 1000;

/// The keys of a JSON pointer (`/a~1b/0` is `["a/b", "0"]`).
fn pointer_keys(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix('/')?;
    if path.len() > 500 {
        return None;
    }
    Some(rest.split('/').map(|k| k.replace("~1", "/").replace("~0", "~")).collect())
}

/// Scrubs the lead's value from events, attempts and dead letters, a batch per transaction.
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
    let details = json!({"path": input.path, "value_sha256": hex_of(digest.as_ref()), "events": total.events,
                         "attempts": total.attempts, "dead_letters": total.dead_letters});
    change(&mut conn, &app.caches, Actor::Key(auth), async |_, trail| {
        trail.audit(auth.org_id, "erasure.completed", "erasure", &input.path, details);
        Ok(())
    })
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
