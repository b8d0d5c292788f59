//! Webhook target URLs.

use std::fmt;
use std::net::IpAddr;

use url::{Host, Url};

use crate::net::{is_internal_hostname, is_public_ip};

pub const MAX_URL_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("is not a valid absolute URL")]
    Malformed,
    #[error("must use http or https")]
    Scheme,
    #[error("must not contain credentials")]
    Credentials,
    #[error("must not contain a fragment")]
    Fragment,
    #[error("is longer than 2048 characters")]
    TooLong,
    #[error("points at a private, loopback, link-local or metadata address, which this server does not deliver to")]
    PrivateTarget,
}

/// An http(s) URL without credentials or fragment. Whether its host is
/// allowed is decided by [`WebhookUrl::parse`]'s `allow_private` flag for IP
/// literals and well-known internal names; names that resolve to private
/// addresses are caught by the caller's resolution check and at connect time.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(Url);

impl WebhookUrl {
    pub fn parse(text: &str, allow_private: bool) -> Result<Self, UrlError> {
        if text.len() > MAX_URL_LEN {
            return Err(UrlError::TooLong);
        }
        let url = Url::parse(text).map_err(|_| UrlError::Malformed)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(UrlError::Scheme);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(UrlError::Credentials);
        }
        if url.fragment().is_some() {
            return Err(UrlError::Fragment);
        }
        let host = url.host().ok_or(UrlError::Malformed)?;
        if !allow_private {
            let blocked = match host {
                Host::Ipv4(v4) => !is_public_ip(IpAddr::V4(v4)),
                Host::Ipv6(v6) => !is_public_ip(IpAddr::V6(v6)),
                Host::Domain(name) => is_internal_hostname(name),
            };
            if blocked {
                return Err(UrlError::PrivateTarget);
            }
        }
        Ok(Self(url))
    }

    pub fn as_url(&self) -> &Url {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The host name when it is a name rather than an IP literal.
    pub fn domain(&self) -> Option<&str> {
        self.0.domain()
    }

    pub fn port_or_default(&self) -> u16 {
        self.0.port_or_known_default().unwrap_or(443)
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookUrl({})", self.0)
    }
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_public_http_and_https() {
        assert!(WebhookUrl::parse("https://hooks.example.com/lead?x=1", false).is_ok());
        assert!(WebhookUrl::parse("http://93.184.216.34:8080/", false).is_ok());
    }

    #[test]
    fn refuses_bad_schemes_credentials_and_fragments() {
        assert_eq!(WebhookUrl::parse("ftp://example.com", false), Err(UrlError::Scheme));
        assert_eq!(WebhookUrl::parse("https://u:p@example.com", false), Err(UrlError::Credentials));
        assert_eq!(WebhookUrl::parse("https://example.com/#x", false), Err(UrlError::Fragment));
        assert_eq!(WebhookUrl::parse("not a url", false), Err(UrlError::Malformed));
    }

    #[test]
    fn refuses_private_targets_unless_allowed() {
        for u in [
            "http://127.0.0.1/",
            "http://[::1]/",
            "http://169.254.169.254/latest",
            "http://localhost:3000/",
            "http://10.0.0.5/",
        ] {
            assert_eq!(WebhookUrl::parse(u, false), Err(UrlError::PrivateTarget), "{u}");
            assert!(WebhookUrl::parse(u, true).is_ok(), "{u}");
        }
    }
}
