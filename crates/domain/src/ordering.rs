//! Ordered delivery: an endpoint's deliveries that share a key value (a lead's
//! id, say) form a lane and go out one at a time, in ingest order.
//!
//! An endpoint's `ordering` is `{"key": "<JSON pointer into data>",
//! "on_dead_letter": "skip" | "hold"}`. The lane of an event is the value at
//! the pointer; an event without it is delivered outside any lane.

use serde_json::Value;

use crate::filter::FilterError;

/// Longest lane value kept as it is; longer ones are kept as their SHA-256.
const MAX_LANE: usize = 200;

/// What a lane does when its head is dead-lettered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnDeadLetter {
    /// The next delivery goes out (the dead letter can be replayed later, out of order).
    #[default]
    Skip,
    /// The lane waits until the dead letter is replayed and delivered, or resolved.
    Hold,
}

impl OnDeadLetter {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Skip => "skip",
            Self::Hold => "hold",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ordering {
    /// A JSON pointer into the event's data, such as `/id`.
    pub key: String,
    pub on_dead_letter: OnDeadLetter,
}

impl Ordering {
    /// Parses and checks an `ordering` object; `field` names it in errors.
    pub fn parse(v: &Value, field: &str) -> Result<Self, Vec<FilterError>> {
        let mut errors = Vec::new();
        let mut err = |at: String, message: &str| errors.push(FilterError { field: at, message: message.into() });
        let Some(obj) = v.as_object() else {
            err(field.into(), "must be an object such as {\"key\": \"/id\"}");
            return Err(errors);
        };
        for k in obj.keys() {
            if !matches!(k.as_str(), "key" | "on_dead_letter") {
                err(format!("{field}.{k}"), "unknown field; ordering has key and on_dead_letter");
            }
        }
        let key = match obj.get("key").and_then(Value::as_str) {
            Some(p) if p.starts_with('/') && p.len() <= 500 => Some(p.to_owned()),
            Some(_) => {
                err(format!("{field}.key"), "must be a JSON pointer into the event's data, such as /id");
                None
            }
            None => {
                err(format!("{field}.key"), "is required: a JSON pointer into the event's data, such as /id");
                None
            }
        };
        let on_dead_letter = match obj.get("on_dead_letter") {
            None | Some(Value::Null) => OnDeadLetter::Skip,
            Some(Value::String(s)) if s == "skip" => OnDeadLetter::Skip,
            Some(Value::String(s)) if s == "hold" => OnDeadLetter::Hold,
            Some(_) => {
                err(format!("{field}.on_dead_letter"), "must be skip or hold");
                OnDeadLetter::Skip
            }
        };
        match key {
            Some(key) if errors.is_empty() => Ok(Self { key, on_dead_letter }),
            _ => Err(errors),
        }
    }

    /// How it is stored and shown.
    pub fn to_json(&self) -> Value {
        serde_json::json!({"key": self.key, "on_dead_letter": self.on_dead_letter.as_str()})
    }

    /// The lane of an event with this data: the value at the key (a string
    /// as itself, anything else as its JSON), or None when absent or null.
    pub fn lane_of(&self, data: &Value) -> Option<String> {
        let text = match data.pointer(&self.key)? {
            Value::Null => return None,
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        if text.len() <= MAX_LANE {
            return Some(text);
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        Some(format!("sha256:{}", hex::encode(digest.as_ref())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_key_with_skip_by_default_and_names_what_is_wrong() {
        let o = Ordering::parse(&json!({"key": "/id"}), "ordering").unwrap();
        assert_eq!(o, Ordering { key: "/id".into(), on_dead_letter: OnDeadLetter::Skip });
        assert_eq!(o.to_json(), json!({"key": "/id", "on_dead_letter": "skip"}));
        let held = Ordering::parse(&json!({"key": "/lead/id", "on_dead_letter": "hold"}), "ordering").unwrap();
        assert_eq!(held.on_dead_letter, OnDeadLetter::Hold);

        let fields = |v: Value| -> Vec<String> {
            Ordering::parse(&v, "ordering").unwrap_err().into_iter().map(|e| e.field).collect()
        };
        assert_eq!(fields(json!("id")), ["ordering"]);
        assert_eq!(fields(json!({})), ["ordering.key"]);
        assert_eq!(fields(json!({"key": "id"})), ["ordering.key"]);
        assert_eq!(fields(json!({"key": "/id", "on_dead_letter": "drop"})), ["ordering.on_dead_letter"]);
        assert_eq!(fields(json!({"key": "/id", "by": 1})), ["ordering.by"]);
    }

    #[test]
    fn the_lane_is_the_value_at_the_key() {
        let o = Ordering::parse(&json!({"key": "/id"}), "ordering").unwrap();
        assert_eq!(o.lane_of(&json!({"id": "lead_1"})).as_deref(), Some("lead_1"));
        assert_eq!(o.lane_of(&json!({"id": 42})).as_deref(), Some("42"));
        assert_eq!(o.lane_of(&json!({"id": null})), None);
        assert_eq!(o.lane_of(&json!({"name": "Ada"})), None);
        let long = "x".repeat(500);
        let lane = o.lane_of(&json!({"id": long})).unwrap();
        assert!(lane.starts_with("sha256:") && lane.len() == 7 + 64, "{lane}");
        assert_eq!(o.lane_of(&json!({"id": "x".repeat(500)})), Some(lane));
    }
}
