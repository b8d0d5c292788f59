//! Where webhooks may go: URL rules plus a DNS check at save time. The
//! worker checks the resolved addresses again at connect time.

use std::net::IpAddr;
use std::time::Duration;

use hookline_domain::net::is_public_ip;
use hookline_domain::webhook_url::{UrlError, WebhookUrl};

/// Parses and checks a webhook URL; the error message is for the `url` field.
pub async fn check_url(text: &str, allow_private: bool) -> Result<WebhookUrl, String> {
    let url = WebhookUrl::parse(text, allow_private).map_err(|e| e.to_string())?;
    if allow_private {
        return Ok(url);
    }
    if let Some(host) = url.domain() {
        let lookup = tokio::net::lookup_host((host.to_owned(), url.port_or_default()));
        // A name that does not resolve yet is accepted: the connect-time check still applies.
        if let Ok(Ok(addrs)) = tokio::time::timeout(Duration::from_secs(2), lookup).await {
            let addrs: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
            if addrs.iter().any(|ip| !is_public_ip(*ip)) {
                return Err(format!("{} (`{host}` resolves to one)", UrlError::PrivateTarget));
            }
        }
    }
    Ok(url)
}
