//! Endpoint filters: a JSON predicate over the delivery body
//! (`{"event", "timestamp", "data"}`), checked when saved and evaluated at
//! fan-out, so a filtered-out endpoint gets no delivery at all.
//!
//! A leaf is `{"path": "<JSON pointer>", "op": "eq"|"ne"|"in"|"gt"|"gte"|"lt"|"lte"|"exists", "value": …}`;
//! `{"and": [...]}`, `{"or": [...]}` and `{"not": {...}}` combine them.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

/// At most this deep…
pub const MAX_DEPTH: usize = 8;
/// …with at most this many nodes in all…
pub const MAX_NODES: usize = 64;
/// …and this many values in an `in` list.
pub const MAX_IN: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    In,
    Gt,
    Gte,
    Lt,
    Lte,
    Exists,
}

impl Op {
    const ALL: [(&'static str, Op); 8] = [
        ("eq", Op::Eq),
        ("ne", Op::Ne),
        ("in", Op::In),
        ("gt", Op::Gt),
        ("gte", Op::Gte),
        ("lt", Op::Lt),
        ("lte", Op::Lte),
        ("exists", Op::Exists),
    ];

    fn parse(s: &str) -> Option<Op> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, o)| *o)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Leaf { path: String, op: Op, value: Value },
    And(Vec<Filter>),
    Or(Vec<Filter>),
    Not(Box<Filter>),
}

/// What is wrong with a filter, and where (`filter.and[1].op`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterError {
    pub field: String,
    pub message: String,
}

impl Filter {
    /// Parses and checks a filter; `field` names it in errors (`filter`).
    pub fn parse(v: &Value, field: &str) -> Result<Filter, Vec<FilterError>> {
        let mut errors = Vec::new();
        let mut nodes = 0;
        let f = parse_node(v, field, 1, &mut nodes, &mut errors);
        if nodes > MAX_NODES {
            errors.push(FilterError { field: field.into(), message: format!("at most {MAX_NODES} conditions") });
        }
        match f {
            Some(f) if errors.is_empty() => Ok(f),
            _ => Err(errors),
        }
    }

    /// A filter as stored on an endpoint. It was checked when saved; one that
    /// no longer parses matches nothing, so it never lets more through.
    pub fn saved(v: &Value) -> Filter {
        Filter::parse(v, "filter").unwrap_or_else(|_| Filter::Or(Vec::new()))
    }

    /// Whether an event's delivery body (type, time, data) matches.
    pub fn matches_event(&self, event: &str, at: chrono::DateTime<chrono::Utc>, data: &Value) -> bool {
        let timestamp = crate::event::rfc3339(at);
        self.matches(&Body { event, timestamp: &timestamp, data })
    }

    /// Whether a delivery body matches.
    pub fn matches(&self, body: &Body<'_>) -> bool {
        match self {
            Filter::And(all) => all.iter().all(|f| f.matches(body)),
            Filter::Or(any) => any.iter().any(|f| f.matches(body)),
            Filter::Not(f) => !f.matches(body),
            Filter::Leaf { path, op, value } => {
                let found = body.get(path);
                match (op, found.as_deref()) {
                    (Op::Exists, found) => found.is_some() == value.as_bool().unwrap_or(true),
                    (Op::Eq, Some(x)) => same(x, value),
                    (Op::Eq, None) => false,
                    (Op::Ne, Some(x)) => !same(x, value),
                    (Op::Ne, None) => true,
                    (Op::In, Some(x)) => value.as_array().is_some_and(|vs| vs.iter().any(|v| same(x, v))),
                    (Op::In, None) => false,
                    (Op::Gt, Some(x)) => order(x, value) == Some(Ordering::Greater),
                    (Op::Gte, Some(x)) => matches!(order(x, value), Some(Ordering::Greater | Ordering::Equal)),
                    (Op::Lt, Some(x)) => order(x, value) == Some(Ordering::Less),
                    (Op::Lte, Some(x)) => matches!(order(x, value), Some(Ordering::Less | Ordering::Equal)),
                    (_, None) => false,
                }
            }
        }
    }
}

/// Equal as JSON, numbers by value (1 equals 1.0).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

/// Numbers by value, strings by code point (RFC 3339 times in UTC sort as strings); nothing else.
fn order(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

fn parse_node(v: &Value, at: &str, depth: usize, nodes: &mut usize, errors: &mut Vec<FilterError>) -> Option<Filter> {
    *nodes += 1;
    let mut err = |field: String, message: String| errors.push(FilterError { field, message });
    if depth > MAX_DEPTH {
        err(at.into(), format!("nested more than {MAX_DEPTH} deep"));
        return None;
    }
    let Some(obj) = v.as_object() else {
        err(at.into(), "must be an object: a condition, or and/or/not".into());
        return None;
    };
    for combinator in ["and", "or"] {
        if let Some(list) = obj.get(combinator) {
            if obj.len() != 1 {
                err(at.into(), format!("`{combinator}` stands alone in its object"));
                return None;
            }
            let Some(items) = list.as_array().filter(|a| !a.is_empty()) else {
                err(format!("{at}.{combinator}"), "must be a non-empty list".into());
                return None;
            };
            let parts: Vec<Option<Filter>> = items
                .iter()
                .enumerate()
                .map(|(i, item)| parse_node(item, &format!("{at}.{combinator}[{i}]"), depth + 1, nodes, errors))
                .collect();
            let parts: Option<Vec<Filter>> = parts.into_iter().collect();
            return parts.map(|p| if combinator == "and" { Filter::And(p) } else { Filter::Or(p) });
        }
    }
    if let Some(inner) = obj.get("not") {
        if obj.len() != 1 {
            err(at.into(), "`not` stands alone in its object".into());
            return None;
        }
        return parse_node(inner, &format!("{at}.not"), depth + 1, nodes, errors).map(|f| Filter::Not(Box::new(f)));
    }
    for key in obj.keys() {
        if !matches!(key.as_str(), "path" | "op" | "value") {
            err(format!("{at}.{key}"), "unknown field; a condition has path, op and value".into());
        }
    }
    let path = match obj.get("path").and_then(Value::as_str) {
        Some(p) if p.is_empty() || (p.starts_with('/') && p.len() <= 500) => Some(p.to_owned()),
        Some(_) => {
            err(format!("{at}.path"), "must be a JSON pointer such as /data/source".into());
            None
        }
        None => {
            err(format!("{at}.path"), "is required: a JSON pointer such as /data/source".into());
            None
        }
    };
    let op = match obj.get("op").and_then(Value::as_str).and_then(Op::parse) {
        Some(op) => Some(op),
        None => {
            let names: Vec<&str> = Op::ALL.iter().map(|(n, _)| *n).collect();
            err(format!("{at}.op"), format!("must be one of {}", names.join(", ")));
            None
        }
    };
    let value = obj.get("value").cloned();
    let (path, op) = (path?, op?);
    let value = match (op, value) {
        (Op::Exists, None) => Value::Bool(true),
        (Op::Exists, Some(Value::Bool(b))) => Value::Bool(b),
        (Op::Exists, Some(_)) => {
            err(format!("{at}.value"), "must be true or false for exists".into());
            return None;
        }
        (_, None) => {
            err(format!("{at}.value"), "is required".into());
            return None;
        }
        (Op::In, Some(Value::Array(vs))) if vs.len() <= MAX_IN => Value::Array(vs),
        (Op::In, Some(_)) => {
            err(format!("{at}.value"), format!("must be a list of at most {MAX_IN} values for in"));
            return None;
        }
        (Op::Gt | Op::Gte | Op::Lt | Op::Lte, Some(v)) if v.is_number() || v.is_string() => v,
        (Op::Gt | Op::Gte | Op::Lt | Op::Lte, Some(_)) => {
            err(format!("{at}.value"), "must be a number or a string to compare with".into());
            return None;
        }
        (_, Some(v)) => v,
    };
    Some(Filter::Leaf { path, op, value })
}

/// A delivery body seen through JSON pointers without building it.
pub struct Body<'a> {
    pub event: &'a str,
    /// RFC 3339, as the body carries it.
    pub timestamp: &'a str,
    pub data: &'a Value,
}

impl Body<'_> {
    pub fn get(&self, pointer: &str) -> Option<Cow<'_, Value>> {
        match pointer {
            "" => Some(Cow::Owned(
                serde_json::json!({"event": self.event, "timestamp": self.timestamp, "data": self.data}),
            )),
            "/event" => Some(Cow::Owned(Value::String(self.event.to_owned()))),
            "/timestamp" => Some(Cow::Owned(Value::String(self.timestamp.to_owned()))),
            "/data" => Some(Cow::Borrowed(self.data)),
            p => p.strip_prefix("/data/").and_then(|rest| self.data.pointer(&format!("/{rest}"))).map(Cow::Borrowed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Filter {
        Filter::parse(&v, "filter").unwrap()
    }

    fn lead(source: &str, score: i64) -> Value {
        json!({"id": "lead_1", "name": "Ada", "email": "ada@example.com", "source": source, "score": score, "tags": ["vip"]})
    }

    fn check(f: &Filter, event: &str, data: &Value) -> bool {
        f.matches(&Body { event, timestamp: "2026-12-05T10:00:00Z", data })
    }

    #[test]
    fn leaves_compare_what_the_pointer_finds() {
        let web = lead("website", 70);
        let ads = lead("ads", 20);
        let f = parse(json!({"path": "/data/source", "op": "eq", "value": "website"}));
        assert!(check(&f, "new_lead", &web) && !check(&f, "new_lead", &ads));
        let f = parse(json!({"path": "/data/score", "op": "gte", "value": 50.0}));
        assert!(check(&f, "new_lead", &web) && !check(&f, "new_lead", &ads));
        let f = parse(json!({"path": "/data/source", "op": "in", "value": ["ads", "referral"]}));
        assert!(!check(&f, "new_lead", &web) && check(&f, "new_lead", &ads));
        let f = parse(json!({"path": "/data/phone", "op": "exists"}));
        assert!(!check(&f, "new_lead", &web));
        let f = parse(json!({"path": "/data/phone", "op": "exists", "value": false}));
        assert!(check(&f, "new_lead", &web));
        let f = parse(json!({"path": "/data/phone", "op": "ne", "value": "x"}));
        assert!(check(&f, "new_lead", &web), "a missing field is not equal to anything");
        let f = parse(json!({"path": "/data/tags/0", "op": "eq", "value": "vip"}));
        assert!(check(&f, "new_lead", &web));
        let f = parse(json!({"path": "/timestamp", "op": "lt", "value": "2027-01-01T00:00:00Z"}));
        assert!(check(&f, "new_lead", &web));
        let f = parse(json!({"path": "/data/source", "op": "gt", "value": 3}));
        assert!(!check(&f, "new_lead", &web), "a string is not ordered against a number");
    }

    #[test]
    fn combinations() {
        let f = parse(json!({"and": [
            {"path": "/event", "op": "eq", "value": "new_lead"},
            {"or": [{"path": "/data/source", "op": "eq", "value": "website"}, {"not": {"path": "/data/score", "op": "lt", "value": 50}}]}
        ]}));
        assert!(check(&f, "new_lead", &lead("website", 1)));
        assert!(check(&f, "new_lead", &lead("ads", 60)));
        assert!(!check(&f, "new_lead", &lead("ads", 10)));
        assert!(!check(&f, "lead_update", &lead("website", 60)));
    }

    #[test]
    fn errors_name_the_bad_part() {
        let fields = |v: Value| -> Vec<String> {
            Filter::parse(&v, "filter").unwrap_err().into_iter().map(|e| e.field).collect()
        };
        assert_eq!(
            fields(json!({"and": [{"path": "/a", "op": "eq", "value": 1}, {"path": "a", "op": "nope"}]})),
            ["filter.and[1].path", "filter.and[1].op"]
        );
        assert_eq!(fields(json!({"or": []})), ["filter.or"]);
        assert_eq!(fields(json!({"not": {"path": "/a", "op": "in", "value": 3}})), ["filter.not.value"]);
        assert_eq!(fields(json!({"path": "/a", "op": "gt", "value": [1]})), ["filter.value"]);
        assert_eq!(fields(json!({"path": "/a", "op": "eq"})), ["filter.value"]);
        assert_eq!(fields(json!({"path": "/a", "op": "eq", "value": 1, "extra": 2})), ["filter.extra"]);
        assert_eq!(fields(json!([1])), ["filter"]);
        let mut deep = json!({"path": "/a", "op": "exists"});
        for _ in 0..MAX_DEPTH {
            deep = json!({"not": deep});
        }
        assert!(!fields(deep).is_empty());
        let wide = json!({"or": (0..MAX_NODES).map(|_| json!({"path": "/a", "op": "exists"})).collect::<Vec<_>>()});
        assert_eq!(fields(wide), ["filter"]);
    }
}
