//! Errors, and how they reach clients.
//!
//! Policy:
//! * `store` returns diesel's results; the service layer maps them here
//!   ([`ApiError::from_db`]): a unique violation becomes a 409, a pool or lock
//!   timeout a 503 with `Retry-After`, anything else a 500.
//! * `domain` code returns `thiserror` enums; handlers turn them into 4xx
//!   problems that name the field.
//! * Background loops use `anyhow` with context and log the whole chain.
//! * Every API answers errors as RFC 9457 `application/problem+json` with a
//!   stable `type` per kind (`https://hookline.dev/problems/<kind>`). A 500
//!   tells the client nothing beyond a request id; the cause is logged.

use std::fmt;

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

pub const PROBLEM_BASE: &str = "https://hookline.dev/problems/";
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// One invalid field.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    /// The field, as a dotted path (`retry_policy.multiplier`) or a JSON Pointer into the payload (`/data/email`).
    pub field: String,
    pub message: String,
}

/// An RFC 9457 problem.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[schema(example = json!({
    "type": "https://hookline.dev/problems/validation",
    "title": "Invalid request",
    "status": 422,
    "detail": "url: must use http or https",
    "errors": [{"field": "url", "message": "must use http or https"}]
}))]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
    /// Names the scope a request lacked (403 `insufficient_scope`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub required_scope: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub title: &'static str,
    pub detail: Option<String>,
    pub errors: Option<Vec<FieldError>>,
    pub required_scope: Option<String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, title: &'static str) -> Self {
        Self { status, kind, title, detail: None, errors: None, required_scope: None, headers: Vec::new() }
    }

    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    pub fn with_headers(mut self, headers: impl IntoIterator<Item = (HeaderName, HeaderValue)>) -> Self {
        self.headers.extend(headers);
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", "Malformed request").detail(detail)
    }

    pub fn invalid_json(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_json", "The body is not valid JSON").detail(detail)
    }

    /// 422 naming one field.
    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::validation(vec![FieldError { field: field.into(), message: message.into() }])
    }

    /// 422 naming every invalid field.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        let mut e = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation", "Invalid request").detail(detail);
        e.errors = Some(errors);
        e
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Authentication required")
            .detail(detail)
            .header(actix_web::http::header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").detail(detail)
    }

    pub fn insufficient_scope(scope: &str) -> Self {
        let mut e = Self::new(StatusCode::FORBIDDEN, "insufficient_scope", "Missing scope")
            .detail(format!("this API key lacks the `{scope}` scope"));
        e.required_scope = Some(scope.to_owned());
        e
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Not found").detail(format!("no such {what}"))
    }

    pub fn conflict(kind: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, kind, "Conflict").detail(detail)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "Payload too large")
            .detail(format!("the body exceeds the limit of {limit} bytes"))
    }

    pub fn unavailable(detail: impl Into<String>, retry_after_secs: u64) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Temporarily unavailable")
            .detail(detail)
            .header(actix_web::http::header::RETRY_AFTER, HeaderValue::from(retry_after_secs))
    }

    /// A 500. The cause is logged with the whole chain; the client learns nothing of it.
    pub fn internal(cause: impl fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error")
            .detail("something went wrong on our side; it has been logged")
    }

    /// Maps a database error: pool and lock timeouts are 503s, the rest 500s.
    /// Unique violations that mean something to the client are mapped by the
    /// caller before this.
    pub fn from_db(err: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match &err {
            Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => {
                Self::unavailable("a concurrent change got in the way; retry", 1)
            }
            Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => {
                Self::unavailable("the database connection dropped; retry", 1)
            }
            Error::DatabaseError(_, info)
                if info.message().contains("lock timeout") || info.message().contains("canceling statement") =>
            {
                Self::unavailable("the database is busy; retry", 1)
            }
            _ => Self::internal(format!("database: {err}")),
        }
    }

    pub fn from_pool(err: impl fmt::Display) -> Self {
        tracing::warn!(error = %err, "database pool unavailable");
        Self::unavailable("the database is unavailable; retry shortly", 2)
    }

    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("{PROBLEM_BASE}{}", self.kind),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            errors: self.errors.clone(),
            required_scope: self.required_scope.clone(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status.as_u16(), self.kind)?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

/// A command-line caller (`hookline org create`) reports it as any other error.
impl std::error::Error for ApiError {}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status);
        resp.content_type(PROBLEM_CONTENT_TYPE);
        for (k, v) in &self.headers {
            resp.insert_header((k.clone(), v.clone()));
        }
        resp.json(self.problem())
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(e: diesel::result::Error) -> Self {
        Self::from_db(e)
    }
}

/// Turns actix's JSON and query extractor failures into problems.
pub fn json_error_handler(err: actix_web::error::JsonPayloadError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    use actix_web::error::JsonPayloadError;
    let api = match &err {
        JsonPayloadError::OverflowKnownLength { limit, .. } | JsonPayloadError::Overflow { limit } => {
            ApiError::payload_too_large(*limit)
        }
        JsonPayloadError::ContentType => {
            ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "Unsupported media type")
                .detail("send the body as application/json")
        }
        JsonPayloadError::Deserialize(e) if e.is_data() => {
            // A well-formed document of the wrong shape: name the field when serde does.
            let msg = e.to_string();
            ApiError::invalid_field(field_from_serde(&msg).unwrap_or_else(|| "body".into()), strip_position(&msg))
        }
        JsonPayloadError::Deserialize(e) => ApiError::invalid_json(strip_position(&e.to_string())),
        other => ApiError::bad_request(other.to_string()),
    };
    api.into()
}

pub fn query_error_handler(
    err: actix_web::error::QueryPayloadError,
    _req: &actix_web::HttpRequest,
) -> actix_web::Error {
    let msg = err.to_string();
    ApiError::invalid_field(field_from_serde(&msg).unwrap_or_else(|| "query".into()), msg).into()
}

pub fn path_error_handler(err: actix_web::error::PathError, _req: &actix_web::HttpRequest) -> actix_web::Error {
    ApiError::not_found(&format!("resource ({err})")).into()
}

fn strip_position(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_owned(),
        None => msg.to_owned(),
    }
}

/// serde messages name fields as "missing field `name`" or "unknown field `x`".
fn field_from_serde(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let end = start + msg[start..].find('`')?;
    let name = &msg[start..end];
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_has_the_rfc_9457_shape() {
        let p = ApiError::invalid_field("url", "must use http or https").problem();
        let v = serde_json::to_value(p).unwrap();
        assert_eq!(v["type"], "https://hookline.dev/problems/validation");
        assert_eq!(v["status"], 422);
        assert_eq!(v["errors"][0]["field"], "url");
        assert!(v.get("required_scope").is_none());
    }

    #[test]
    fn serde_field_names_are_extracted() {
        assert_eq!(field_from_serde("missing field `name` at line 1 column 2"), Some("name".into()));
        assert_eq!(field_from_serde("invalid type: string"), None);
    }
}
