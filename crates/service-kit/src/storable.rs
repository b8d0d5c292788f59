//! Input Postgres cannot store never reaches a handler.
//!
//! Postgres refuses U+0000 in `text` and `jsonb`. A NUL that slipped into a
//! statement shared by several requests (group commit) would fail all of
//! them, so every API refuses it at the edge: in a JSON or form body (422
//! naming the field), in the query string (422 naming the parameter) and in
//! the path (404, as no resource can be named so).
//!
//! JSON can carry NUL only as the escape `\u0000`, so a body is scanned for
//! that escape first and parsed only when it is there: the common case costs
//! one pass over the bytes.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::CONTENT_TYPE;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, ResponseError};
use serde_json::Value;

use crate::error::ApiError;

const NUL_MESSAGE: &str = "must not contain the NUL character (U+0000)";

/// Middleware: answers 422 (or 404 for the path) before the handler runs.
pub async fn refuse_nul(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, actix_web::Error> {
    if req.uri().path().contains("%00") {
        let e = ApiError::not_found("resource (the path contains a NUL character)");
        return Ok(req.into_response(e.error_response()).map_into_right_body());
    }
    if let Some(field) = query_nul(req.query_string()) {
        let e = ApiError::invalid_field(field, NUL_MESSAGE);
        return Ok(req.into_response(e.error_response()).map_into_right_body());
    }
    let kind = body_kind(&req);
    if kind != BodyKind::Other {
        let bytes = match req.extract::<web::Bytes>().await {
            Ok(b) => b,
            Err(e) => {
                let status = e.as_response_error().status_code();
                let api = if status == actix_web::http::StatusCode::PAYLOAD_TOO_LARGE {
                    let limit = req.app_data::<web::Data<crate::server::Limits>>().map(|l| l.max_payload_bytes);
                    ApiError::payload_too_large(limit.unwrap_or_default())
                } else {
                    ApiError::bad_request(format!("reading the body: {e}"))
                };
                return Ok(req.into_response(api.error_response()).map_into_right_body());
            }
        };
        let found = match kind {
            BodyKind::Json => json_nul(&bytes),
            BodyKind::Form => query_nul(std::str::from_utf8(&bytes).unwrap_or("")),
            BodyKind::Other => None,
        };
        if let Some(field) = found {
            let e = ApiError::invalid_field(field, NUL_MESSAGE);
            return Ok(req.into_response(e.error_response()).map_into_right_body());
        }
        req.set_payload(actix_web::dev::Payload::from(bytes));
    }
    Ok(next.call(req).await?.map_into_left_body())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Form,
    Other,
}

fn body_kind(req: &ServiceRequest) -> BodyKind {
    if req.headers().get(CONTENT_TYPE).is_none() {
        // Bodies without a content type are read as JSON by the ingest API.
        return BodyKind::Json;
    }
    let ct = req.content_type().to_ascii_lowercase();
    if ct == "application/x-www-form-urlencoded" {
        BodyKind::Form
    } else if ct.contains("json") {
        BodyKind::Json
    } else {
        BodyKind::Other
    }
}

/// The first query (or form) parameter holding a NUL, in name or value.
pub fn query_nul(query: &str) -> Option<String> {
    if !query.contains("%00") && !query.contains('\0') {
        return None;
    }
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, v)| k.contains('\0') || v.contains('\0')).map(|(k, _)| {
        if k.contains('\0') {
            "query".to_owned()
        } else {
            k.into_owned()
        }
    })
}

/// Where a JSON document holds a NUL, as a dotted path (`data.name`,
/// `allowed_ips[2]`); `None` when it holds none or is not JSON at all (the
/// handler reports that).
pub fn json_nul(body: &[u8]) -> Option<String> {
    if !has_nul_escape(body) {
        return None;
    }
    let value: Value = serde_json::from_slice(body).ok()?;
    nul_path(&value, String::new())
}

/// Whether the bytes hold the JSON escape `\u0000` (not an escaped backslash
/// followed by `u0000`).
fn has_nul_escape(body: &[u8]) -> bool {
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'\\' {
            if body.get(i + 1) == Some(&b'u') && body.get(i + 2..i + 6) == Some(b"0000") {
                return true;
            }
            i += 2;
        } else {
            i += 1;
        }
    }
    false
}

fn nul_path(value: &Value, path: String) -> Option<String> {
    let here = || if path.is_empty() { "body".to_owned() } else { path.clone() };
    match value {
        Value::String(s) => s.contains('\0').then(here),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| nul_path(v, format!("{path}[{i}]"))),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains('\0') {
                return Some(here());
            }
            let child = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
            nul_path(v, child)
        }),
        _ => None,
    }
}

/// Times a client may send: RFC 3339 has four-digit years, and chrono's
/// wider range would overflow arithmetic or fall outside what Postgres stores.
pub fn time_in_range(field: &str, t: Option<chrono::DateTime<chrono::Utc>>) -> Result<(), ApiError> {
    use chrono::Datelike;
    match t {
        Some(t) if !(1..=9999).contains(&t.year()) => {
            Err(ApiError::invalid_field(field, "must be a time between the years 0001 and 9999"))
        }
        _ => Ok(()),
    }
}

/// Text from the outside world (a receiver's answer, an error message) made
/// storable: NUL replaced, at most `max` bytes, cut on a character boundary.
pub fn sanitise(text: &str, max: usize) -> String {
    let mut clean = text.replace('\0', "\u{FFFD}");
    let mut end = clean.len().min(max);
    while !clean.is_char_boundary(end) {
        end -= 1;
    }
    clean.truncate(end);
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nul_and_names_its_field() {
        assert_eq!(json_nul(br#"{"name":"a\u0000b"}"#).as_deref(), Some("name"));
        assert_eq!(json_nul(br#"{"data":{"lead":{"name":"\u0000"}}}"#).as_deref(), Some("data.lead.name"));
        assert_eq!(json_nul(br#"{"allowed_ips":["1.2.3.4","\u0000"]}"#).as_deref(), Some("allowed_ips[1]"));
        assert_eq!(json_nul(br#"{"data":{"k\u0000":1}}"#).as_deref(), Some("data"));
        assert_eq!(json_nul(br#""\u0000""#).as_deref(), Some("body"));
    }

    #[test]
    fn escaped_backslashes_and_other_escapes_pass() {
        assert_eq!(json_nul(br#"{"name":"a\\u0000b"}"#), None);
        assert_eq!(json_nul(br#"{"name":"\u0001 \u00e9 \n"}"#), None);
        assert_eq!(json_nul(br#"{"name":"\\\u0000"}"#).as_deref(), Some("name"));
        assert_eq!(json_nul(b"not json \\u0000"), None);
    }

    #[test]
    fn query_parameters_with_nul_are_named() {
        assert_eq!(query_nul("since=2024-01-01&name=a%00b").as_deref(), Some("name"));
        assert_eq!(query_nul("a%00=1").as_deref(), Some("query"));
        assert_eq!(query_nul("limit=10"), None);
    }

    #[test]
    fn times_outside_four_digit_years_are_refused() {
        let t = |s: &str| Some(s.parse::<chrono::DateTime<chrono::Utc>>().unwrap());
        assert!(time_in_range("until", t("2024-05-01T00:00:00Z")).is_ok());
        assert!(time_in_range("until", None).is_ok());
        let e = time_in_range("until", t("-262143-01-01T00:00:00Z")).unwrap_err();
        assert_eq!(e.errors.unwrap()[0].field, "until");
        assert!(time_in_range("since", t("+10000-01-01T00:00:00Z")).is_err());
    }

    #[test]
    fn sanitise_replaces_nul_and_caps_on_a_char_boundary() {
        assert_eq!(sanitise("a\0b", 100), "a\u{FFFD}b");
        assert_eq!(sanitise("ééé", 3), "é");
        assert_eq!(sanitise("abc", 2), "ab");
        assert_eq!(sanitise("\0\0", 4), "\u{FFFD}", "the cap holds after replacing");
    }
}
