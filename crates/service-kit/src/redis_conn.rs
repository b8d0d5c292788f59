//! The Redis connection: one multiplexed, self-reconnecting connection per
//! process, with short timeouts so a dead Redis fails a call quickly instead
//! of stalling requests.

use std::time::Duration;

use anyhow::{anyhow, Context};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

#[derive(Clone)]
pub struct RedisConn {
    pub client: redis::Client,
    pub manager: ConnectionManager,
    /// Every key Hookline writes starts with this (`HOOKLINE_REDIS_PREFIX`).
    pub prefix: String,
}

impl RedisConn {
    /// `rediss://` speaks TLS (rustls), trusting the system roots and, when
    /// set, the CA bundle in `HOOKLINE_TLS_CA_FILE`.
    pub async fn connect(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let client = match (url.starts_with("rediss://"), tls_roots()?) {
            (true, Some(roots)) => {
                redis::Client::build_with_tls(url, redis::TlsCertificates { client_tls: None, root_cert: Some(roots) })
            }
            _ => redis::Client::open(url),
        }
        .context("HOOKLINE_REDIS_URL is not a valid Redis URL")?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(Duration::from_millis(500)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let manager = tokio::time::timeout(Duration::from_secs(3), client.get_connection_manager_with_config(config))
            .await
            .map_err(|_| anyhow!("timed out"))??;
        Ok(Self { client, manager, prefix: prefix.to_owned() })
    }

    pub fn key(&self, suffix: &str) -> String {
        format!("{}{}", self.prefix, suffix)
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        let mut m = self.manager.clone();
        let pong: String = tokio::time::timeout(Duration::from_secs(1), redis::cmd("PING").query_async(&mut m))
            .await
            .map_err(|_| anyhow!("timed out"))??;
        anyhow::ensure!(pong == "PONG", "unexpected PING answer");
        Ok(())
    }
}

/// The CA bundle of `HOOKLINE_TLS_CA_FILE` followed by the system's, as PEM;
/// `None` when the setting is unset (the system roots alone are used then).
fn tls_roots() -> anyhow::Result<Option<Vec<u8>>> {
    let Some(path) = std::env::var_os("HOOKLINE_TLS_CA_FILE").filter(|p| !p.is_empty()) else { return Ok(None) };
    let mut pem =
        std::fs::read(&path).with_context(|| format!("reading HOOKLINE_TLS_CA_FILE {}", path.to_string_lossy()))?;
    let system = std::env::var_os("SSL_CERT_FILE").unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
    if let Ok(more) = std::fs::read(system) {
        pem.push(b'\n');
        pem.extend(more);
    }
    Ok(Some(pem))
}
