//! Cursor pagination: `?limit=` (default 50, at most 200) and `?cursor=`;
//! answers are `{"data": [...], "next_cursor": "…" | null}`.
//!
//! Lists are ordered newest first by id (UUIDv7, so by creation time). A
//! cursor is the opaque, URL-safe encoding of the last id on the page.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;

pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;

#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 200 (default 50).
    pub limit: Option<i64>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageParams {
    /// Validated (limit, position to continue before).
    pub fn resolve(&self) -> Result<(i64, Option<Uuid>), ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid_field("limit", format!("must be between 1 and {MAX_LIMIT}")));
        }
        let before = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(c) => Some(
                decode_cursor(c).ok_or_else(|| ApiError::invalid_field("cursor", "is not a cursor this API issued"))?,
            ),
        };
        Ok((limit, before))
    }
}

pub fn encode_cursor(id: Uuid) -> String {
    URL_SAFE_NO_PAD.encode(format!("v1:{}", id.simple()))
}

pub fn decode_cursor(text: &str) -> Option<Uuid> {
    let raw = URL_SAFE_NO_PAD.decode(text).ok()?;
    let s = std::str::from_utf8(&raw).ok()?;
    Uuid::parse_str(s.strip_prefix("v1:")?).ok()
}

/// A page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ListResponse<T> {
    pub data: Vec<T>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

impl<T> ListResponse<T> {
    /// Builds the answer; `last_id` is the id of the last row when more follow.
    pub fn new(data: Vec<T>, has_more: bool, last_id: Option<Uuid>) -> Self {
        Self { data, next_cursor: if has_more { last_id.map(encode_cursor) } else { None } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let id = Uuid::now_v7();
        assert_eq!(decode_cursor(&encode_cursor(id)), Some(id));
        assert_eq!(decode_cursor("garbage"), None);
    }

    #[test]
    fn limits_are_bounded() {
        let p = PageParams { limit: Some(201), cursor: None };
        assert!(p.resolve().is_err());
        let p = PageParams { limit: None, cursor: None };
        assert_eq!(p.resolve().unwrap().0, 50);
    }
}
