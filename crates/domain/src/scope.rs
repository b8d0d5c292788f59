//! Roles and the scopes they grant.
//!
//! A key has a role and a set of scopes that is a subset of what its role
//! grants. A key can never mint or raise a key above its own scopes.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Scope {
    #[serde(rename = "keys:read")]
    KeysRead,
    #[serde(rename = "keys:write")]
    KeysWrite,
    #[serde(rename = "webhooks:read")]
    WebhooksRead,
    #[serde(rename = "webhooks:write")]
    WebhooksWrite,
    #[serde(rename = "events:read")]
    EventsRead,
    #[serde(rename = "events:write")]
    EventsWrite,
    #[serde(rename = "deliveries:read")]
    DeliveriesRead,
    #[serde(rename = "deliveries:retry")]
    DeliveriesRetry,
    #[serde(rename = "alerts:read")]
    AlertsRead,
    #[serde(rename = "alerts:write")]
    AlertsWrite,
    #[serde(rename = "audit:read")]
    AuditRead,
}

impl Scope {
    pub const ALL: [Scope; 11] = [
        Scope::KeysRead,
        Scope::KeysWrite,
        Scope::WebhooksRead,
        Scope::WebhooksWrite,
        Scope::EventsRead,
        Scope::EventsWrite,
        Scope::DeliveriesRead,
        Scope::DeliveriesRetry,
        Scope::AlertsRead,
        Scope::AlertsWrite,
        Scope::AuditRead,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Scope::KeysRead => "keys:read",
            Scope::KeysWrite => "keys:write",
            Scope::WebhooksRead => "webhooks:read",
            Scope::WebhooksWrite => "webhooks:write",
            Scope::EventsRead => "events:read",
            Scope::EventsWrite => "events:write",
            Scope::DeliveriesRead => "deliveries:read",
            Scope::DeliveriesRetry => "deliveries:retry",
            Scope::AlertsRead => "alerts:read",
            Scope::AlertsWrite => "alerts:write",
            Scope::AuditRead => "audit:read",
        }
    }

    pub fn is_read(&self) -> bool {
        self.as_str().ends_with(":read")
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope `{0}`")]
pub struct UnknownScope(pub String);

impl FromStr for Scope {
    type Err = UnknownScope;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL.into_iter().find(|sc| sc.as_str() == s).ok_or_else(|| UnknownScope(s.chars().take(64).collect()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    ReadOnly,
    ReadWrite,
    Admin,
}

impl Role {
    pub fn as_str(&self) -> &'static str {
        match self {
            Role::ReadOnly => "read_only",
            Role::ReadWrite => "read_write",
            Role::Admin => "admin",
        }
    }

    /// Every scope this role grants.
    pub fn scopes(&self) -> BTreeSet<Scope> {
        Scope::ALL
            .into_iter()
            .filter(|s| match self {
                Role::ReadOnly => s.is_read(),
                Role::ReadWrite => {
                    s.is_read() || matches!(s, Scope::WebhooksWrite | Scope::EventsWrite | Scope::DeliveriesRetry)
                }
                Role::Admin => true,
            })
            .collect()
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "read_only" => Ok(Role::ReadOnly),
            "read_write" => Ok(Role::ReadWrite),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role `{other}`")),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("scope `{scope}` is not granted by role `{role}`")]
    NotInRole { scope: Scope, role: Role },
}

/// The effective scopes of a new key: the requested subset of the role's
/// scopes, or all of them when none were requested.
pub fn effective_scopes(role: Role, requested: Option<&[Scope]>) -> Result<BTreeSet<Scope>, ScopeError> {
    let granted = role.scopes();
    match requested {
        None => Ok(granted),
        Some(req) => {
            for s in req {
                if !granted.contains(s) {
                    return Err(ScopeError::NotInRole { scope: *s, role });
                }
            }
            Ok(req.iter().copied().collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_map_to_the_documented_scopes() {
        let ro = Role::ReadOnly.scopes();
        assert!(ro.iter().all(Scope::is_read));
        assert!(ro.contains(&Scope::KeysRead));
        let rw = Role::ReadWrite.scopes();
        assert!(
            rw.contains(&Scope::WebhooksWrite)
                && rw.contains(&Scope::EventsWrite)
                && rw.contains(&Scope::DeliveriesRetry)
        );
        assert!(!rw.contains(&Scope::KeysWrite));
        assert_eq!(Role::Admin.scopes().len(), Scope::ALL.len());
    }

    #[test]
    fn a_subset_is_allowed_and_more_is_refused() {
        let subset = effective_scopes(Role::ReadWrite, Some(&[Scope::EventsWrite])).unwrap();
        assert_eq!(subset.len(), 1);
        assert!(effective_scopes(Role::ReadOnly, Some(&[Scope::EventsWrite])).is_err());
    }

    #[test]
    fn scopes_round_trip_their_names() {
        for s in Scope::ALL {
            assert_eq!(s.as_str().parse::<Scope>().unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), serde_json::json!(s.as_str()));
        }
        assert!("keys:delete".parse::<Scope>().is_err());
    }
}
