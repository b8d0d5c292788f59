//! Prefixed string identifiers (`org_…`, `key_…`, `ep_…`, …).
//!
//! Every id is a UUIDv7 (time-ordered, so ids sort by creation) rendered as
//! `<prefix>_<32 lowercase hex>`. The prefix makes ids self-describing in logs
//! and support tickets, and parsing checks it, so a delivery id can never be
//! passed where an endpoint id is expected.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a valid {kind} id (expected `{prefix}_` followed by 32 hex characters)")]
pub struct IdParseError {
    pub kind: &'static str,
    pub prefix: &'static str,
    pub value: String,
}

macro_rules! prefixed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            /// A new, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            pub fn parse(value: &str) -> Result<Self, IdParseError> {
                let err = || IdParseError { kind: $kind, prefix: $prefix, value: truncate(value) };
                let rest = value
                    .strip_prefix($prefix)
                    .and_then(|r| r.strip_prefix('_'))
                    .ok_or_else(err)?;
                if rest.len() != 32 || !rest.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
                    return Err(err());
                }
                Uuid::parse_str(rest).map(Self).map_err(|_| err())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{}", $prefix, self.0.simple())
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some(concat!("^", $prefix, "_[0-9a-f]{32}$")))
                    .examples([serde_json::json!(concat!($prefix, "_0193a4c1e5f27b8c9d0e1f2a3b4c5d6e"))])
                    .description(Some(concat!("A ", $kind, " id.")))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

fn truncate(value: &str) -> String {
    value.chars().take(80).collect()
}

prefixed_id!(
    /// An organisation (tenant).
    OrgId, "org", "organisation");
prefixed_id!(
    /// An API key. Stable across rotations.
    KeyId, "key", "API key");
prefixed_id!(
    /// A webhook endpoint.
    EndpointId, "ep", "webhook endpoint");
prefixed_id!(
    /// An accepted event.
    EventId, "evt", "event");
prefixed_id!(
    /// One event bound for one endpoint; stable across attempts.
    DeliveryId, "dlv", "delivery");
prefixed_id!(
    /// One HTTP attempt of a delivery.
    AttemptId, "att", "delivery attempt");
prefixed_id!(
    /// An alert.
    AlertId, "alr", "alert");
prefixed_id!(
    /// A custom event type.
    EventTypeId, "etp", "event type");
prefixed_id!(
    /// An audit log entry.
    AuditId, "aud", "audit entry");
prefixed_id!(
    /// A portal link.
    PortalSessionId, "ps", "portal link");
prefixed_id!(
    /// A backfill of past events to an endpoint.
    BackfillId, "bf", "backfill");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_its_string_form() {
        let id = EndpointId::new();
        let s = id.to_string();
        assert!(s.starts_with("ep_"));
        assert_eq!(s.len(), 3 + 32);
        assert_eq!(EndpointId::parse(&s).unwrap(), id);
    }

    #[test]
    fn refuses_the_wrong_prefix_and_malformed_bodies() {
        let s = DeliveryId::new().to_string();
        assert!(EndpointId::parse(&s).is_err());
        assert!(OrgId::parse("org_").is_err());
        assert!(OrgId::parse("org_zz3a4c1e5f27b8c9d0e1f2a3b4c5d6e7").is_err());
        assert!(OrgId::parse("org_0193A4C1E5F27B8C9D0E1F2A3B4C5D6E").is_err());
        assert!(OrgId::parse("org0193a4c1e5f27b8c9d0e1f2a3b4c5d6e").is_err());
    }

    #[test]
    fn ids_sort_by_creation() {
        let a = EventId::new();
        let b = EventId::new();
        assert!(a.to_string() < b.to_string());
    }
}
