//! Custom headers an endpoint sends with every delivery: a name that is an
//! HTTP token and not one Hookline sets itself, and a value on one line.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomHeader {
    name: String,
    value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    InvalidName,
    Reserved,
    InvalidValue,
}

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeaderError::InvalidName => "is not a valid header name",
            HeaderError::Reserved => "is set by Hookline and cannot be overridden",
            HeaderError::InvalidValue => "value must be at most 4096 characters without line breaks",
        })
    }
}

impl std::error::Error for HeaderError {}

/// The most custom headers one endpoint may send.
pub const MAX_HEADERS: usize = 20;

impl CustomHeader {
    pub fn parse(name: String, value: String) -> Result<Self, HeaderError> {
        if !is_token(&name) {
            return Err(HeaderError::InvalidName);
        }
        if is_reserved(&name) {
            return Err(HeaderError::Reserved);
        }
        if value.len() > 4096 || value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(HeaderError::InvalidValue);
        }
        Ok(Self { name, value })
    }

    pub fn into_parts(self) -> (String, String) {
        (self.name, self.value)
    }
}

/// Headers that carry the signature, the trace or the framing of a delivery.
fn is_reserved(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("x-webhook-")
        || n.starts_with("webhook-")
        || matches!(
            n.as_str(),
            "content-type"
                | "content-length"
                | "host"
                | "user-agent"
                | "transfer-encoding"
                | "connection"
                | "traceparent"
                | "tracestate"
        )
}

/// An RFC 9110 token of at most 100 bytes.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(name: &str, value: &str) -> Result<CustomHeader, HeaderError> {
        CustomHeader::parse(name.into(), value.into())
    }

    #[test]
    fn names_are_tokens_and_not_hooklines_own() {
        assert!(parse("X-Tenant", "acme").is_ok());
        assert_eq!(parse("X Tenant", "a"), Err(HeaderError::InvalidName));
        assert_eq!(parse("", "a"), Err(HeaderError::InvalidName));
        assert_eq!(parse("Webhook-Signature", "a"), Err(HeaderError::Reserved));
        assert_eq!(parse("x-webhook-id", "a"), Err(HeaderError::Reserved));
        assert_eq!(parse("Content-Type", "a"), Err(HeaderError::Reserved));
        assert_eq!(parse("traceparent", "a"), Err(HeaderError::Reserved));
    }

    #[test]
    fn values_stay_on_one_line() {
        assert_eq!(parse("X-A", "a\r\nX-B: b"), Err(HeaderError::InvalidValue));
        assert_eq!(parse("X-A", &"v".repeat(4097)), Err(HeaderError::InvalidValue));
        assert!(parse("X-A", &"v".repeat(4096)).is_ok());
    }
}
