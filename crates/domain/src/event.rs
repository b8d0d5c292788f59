//! Event types, their payload schemas, and the webhook body.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

pub const NEW_LEAD: &str = "new_lead";
pub const LEAD_UPDATE: &str = "lead_update";
pub const WEBHOOK_TEST: &str = "webhook.test";
pub const ALERT_OPENED: &str = "alert.opened";
pub const ALERT_RESOLVED: &str = "alert.resolved";
pub const ENDPOINT_DISABLED: &str = "endpoint.disabled";
pub const DELIVERY_DEAD_LETTERED: &str = "delivery.dead_lettered";

/// Operational events: emitted by Hookline itself, never accepted from
/// clients, and delivered only to endpoints that name them (not to `*`).
pub const OPERATIONAL: [&str; 4] = [ALERT_OPENED, ALERT_RESOLVED, ENDPOINT_DISABLED, DELIVERY_DEAD_LETTERED];
pub const MAX_EVENT_TYPE_LEN: usize = 100;

/// The built-in event types and their JSON Schemas (for `data`).
pub const BUILTIN_SCHEMAS: [(&str, &str); 7] = [
    (NEW_LEAD, include_str!("../../../proto-schemas/events/new_lead.schema.json")),
    (LEAD_UPDATE, include_str!("../../../proto-schemas/events/lead_update.schema.json")),
    (WEBHOOK_TEST, include_str!("../../../proto-schemas/events/webhook.test.schema.json")),
    (ALERT_OPENED, include_str!("../../../proto-schemas/events/alert.opened.schema.json")),
    (ALERT_RESOLVED, include_str!("../../../proto-schemas/events/alert.resolved.schema.json")),
    (ENDPOINT_DISABLED, include_str!("../../../proto-schemas/events/endpoint.disabled.schema.json")),
    (DELIVERY_DEAD_LETTERED, include_str!("../../../proto-schemas/events/delivery.dead_lettered.schema.json")),
];

/// An event type as a metric label: built-in types by name, every
/// tenant-defined type as `custom`, so the label's values stay bounded.
pub fn metric_label(event_type: &str) -> &str {
    if BUILTIN_SCHEMAS.iter().any(|(n, _)| *n == event_type) {
        event_type
    } else {
        "custom"
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("event type names are 1-100 characters of lowercase letters, digits, `_` and `.`, starting with a letter")]
pub struct EventTypeError;

/// An event type name: `new_lead`, `lead_update`, `webhook.test`, or an
/// organisation's own (`invoice.paid`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventType(String);

impl EventType {
    pub fn parse(name: &str) -> Result<Self, EventTypeError> {
        let ok = !name.is_empty()
            && name.len() <= MAX_EVENT_TYPE_LEN
            && name.as_bytes()[0].is_ascii_lowercase()
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.')
            && !name.ends_with('.')
            && !name.contains("..");
        if ok {
            Ok(Self(name.to_owned()))
        } else {
            Err(EventTypeError)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_builtin(&self) -> bool {
        BUILTIN_SCHEMAS.iter().any(|(n, _)| *n == self.0)
    }

    /// Emitted by Hookline only (alerts, disabled endpoints, dead letters).
    pub fn is_operational(&self) -> bool {
        OPERATIONAL.contains(&self.0.as_str())
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One failing place in a payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SchemaViolation {
    /// JSON Pointer into the event's `data`, e.g. `/email`.
    pub path: String,
    pub message: String,
}

/// A compiled payload schema.
pub struct PayloadSchema(jsonschema::Validator);

impl fmt::Debug for PayloadSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PayloadSchema")
    }
}

impl PayloadSchema {
    /// Compiles a schema; the error says why the schema itself is invalid.
    pub fn compile(schema: &serde_json::Value) -> Result<Self, String> {
        if !schema.is_object() {
            return Err("a schema must be a JSON object".into());
        }
        jsonschema::meta::validate(schema).map_err(|e| format!("not a valid JSON Schema: {e}"))?;
        jsonschema::options()
            .should_validate_formats(true)
            .build(schema)
            .map(Self)
            .map_err(|e| format!("not a valid JSON Schema: {e}"))
    }

    pub fn validate(&self, data: &serde_json::Value) -> Result<(), Vec<SchemaViolation>> {
        let errors: Vec<_> = self
            .0
            .iter_errors(data)
            .map(|e| SchemaViolation { path: e.instance_path().to_string(), message: e.to_string() })
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// The compiled built-in schemas.
pub fn builtin_schemas() -> BTreeMap<&'static str, PayloadSchema> {
    BUILTIN_SCHEMAS
        .iter()
        .map(|(name, text)| {
            let value: serde_json::Value = serde_json::from_str(text).expect("built-in schema is JSON");
            (*name, PayloadSchema::compile(&value).expect("built-in schema compiles"))
        })
        .collect()
}

#[derive(Serialize)]
struct WebhookBody<'a> {
    event: &'a str,
    timestamp: String,
    data: &'a serde_json::Value,
}

/// The body every delivery POSTs: `{"event": …, "timestamp": …, "data": {…}}`,
/// with the timestamp in RFC 3339 UTC (`2025-01-01T12:00:00Z`).
pub fn webhook_body(event_type: &str, occurred_at: DateTime<Utc>, data: &serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&WebhookBody { event: event_type, timestamp: rfc3339(occurred_at), data })
        .expect("a JSON value always serialises")
}

/// RFC 3339 UTC, seconds precision unless there are sub-seconds.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    if t.timestamp_subsec_nanos() == 0 {
        t.to_rfc3339_opts(SecondsFormat::Secs, true)
    } else {
        t.to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_type_names() {
        assert!(EventType::parse("new_lead").unwrap().is_builtin());
        assert!(EventType::parse("invoice.paid").is_ok());
        for bad in ["", "New", "1x", "a..b", "a.", "a-b", &"x".repeat(101)] {
            assert!(EventType::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lead_schema_requires_id_name_email() {
        let schemas = builtin_schemas();
        let s = &schemas[NEW_LEAD];
        assert!(s.validate(&json!({"id": "l1", "name": "Ada", "email": "ada@example.com"})).is_ok());
        let errs = s.validate(&json!({"id": "l1", "email": "not-an-email"})).unwrap_err();
        assert!(errs.iter().any(|e| e.message.contains("name")), "{errs:?}");
        assert!(errs.iter().any(|e| e.path == "/email"), "{errs:?}");
    }

    #[test]
    fn lead_update_requires_changes() {
        let schemas = builtin_schemas();
        let errs =
            schemas[LEAD_UPDATE].validate(&json!({"id": "l1", "name": "Ada", "email": "ada@example.com"})).unwrap_err();
        assert!(errs.iter().any(|e| e.message.contains("changes")));
    }

    #[test]
    fn custom_schemas_are_checked_themselves() {
        assert!(PayloadSchema::compile(&json!({"type": "nope"})).is_err());
        assert!(PayloadSchema::compile(&json!([1])).is_err());
        assert!(PayloadSchema::compile(&json!({"type": "object", "required": ["amount"]})).is_ok());
    }

    #[test]
    fn body_has_the_guides_shape_and_order() {
        let t = DateTime::parse_from_rfc3339("2025-01-01T12:00:00Z").unwrap().with_timezone(&Utc);
        let body = webhook_body("new_lead", t, &json!({"id": "lead_123"}));
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"event":"new_lead","timestamp":"2025-01-01T12:00:00Z","data":{"id":"lead_123"}}"#
        );
    }
}
