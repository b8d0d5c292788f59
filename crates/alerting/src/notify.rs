//! Email and Slack-style notifications, at most one per alert per channel
//! per `HOOKLINE_ALERT_RENOTIFY_SECS` (15 minutes by default) while it keeps
//! occurring; an opening and a resolution are always told once.

use crate::state::AlertingState;
use hookline_domain::id::{AlertId, EndpointId};
use hookline_service_kit::config::Settings;
use hookline_store::alerts::SettingsRow;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::metrics::NOTIFICATIONS;
use crate::rules::Notice;

pub struct Notifier {
    smtp: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Option<Mailbox>,
    http: reqwest::Client,
    allow_private: bool,
    renotify_secs: i64,
}

impl Notifier {
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let smtp = match &settings.smtp_url {
            Some(url) => Some(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())
                    .map_err(|e| anyhow::anyhow!("HOOKLINE_SMTP_URL: {e}"))?
                    .timeout(Some(std::time::Duration::from_secs(10)))
                    .build(),
            ),
            None => None,
        };
        let from = settings.smtp_from.parse::<Mailbox>().map_err(|e| anyhow::anyhow!("HOOKLINE_SMTP_FROM: {e}")).ok();
        // The Slack-style URL is the tenant's choice: the delivery guard applies.
        let http = hookline_service_kit::outbound::build_client(settings.allow_private_targets, 8)?;
        Ok(Self {
            smtp,
            from,
            http,
            allow_private: settings.allow_private_targets,
            renotify_secs: settings.alert_renotify_secs as i64,
        })
    }

    /// Sends what the committed notices call for, on the channels in `settings`
    /// (the organisation's settings the notices were judged by).
    pub async fn dispatch(&self, state: &AlertingState, settings: &SettingsRow, notices: Vec<Notice>) {
        for n in notices {
            let (alert, verb, interval) = match &n {
                Notice::Opened(a) => (a, "opened", 0),
                Notice::Repeated(a) => (a, "still open", self.renotify_secs),
                Notice::Resolved(a) => (a, "resolved", 0),
            };
            let subject = format!("[Hookline] {} {verb}: {}", alert.rule, alert.message);
            let body = format!(
                "Alert {} ({}) is {verb}.\n\n{}\nEndpoint: {}\nOccurrences: {}\nFirst seen: {}\nLast seen: {}\n",
                AlertId::from_uuid(alert.id),
                alert.rule,
                alert.message,
                alert.endpoint_id.map(|e| EndpointId::from_uuid(e).to_string()).unwrap_or_else(|| "-".into()),
                alert.occurrences,
                alert.first_seen_at.to_rfc3339(),
                alert.last_seen_at.to_rfc3339(),
            );
            let kind = match n {
                Notice::Resolved(_) => "resolved",
                _ => "open",
            };
            if !settings.email_recipients.is_empty()
                && self.smtp.is_some()
                && self.claim(state, alert.id, &format!("email:{kind}"), interval).await
            {
                let r = self.email(&settings.email_recipients, &subject, &body).await;
                record("email", r);
            }
            if let Some(sealed) = &settings.slack_webhook_ciphertext {
                if self.claim(state, alert.id, &format!("slack:{kind}"), interval).await {
                    let r = match hookline_service_kit::secrets::open_slack_url(&state.master_key, alert.org_id, sealed)
                    {
                        Ok(url) => self.slack(&url, &format!("{subject}\n{body}")).await,
                        Err(e) => Err(e.into()),
                    };
                    record("slack", r);
                }
            }
        }
    }

    /// The throttle: one notification per alert, channel and kind per interval
    /// (an interval of 0 means once for good).
    async fn claim(&self, state: &AlertingState, alert: uuid::Uuid, channel: &str, interval: i64) -> bool {
        let Ok(mut conn) = state.pool.get().await else { return false };
        let interval = if interval == 0 { 10 * 365 * 86_400 } else { interval };
        hookline_store::alerts::claim_notification(&mut conn, alert, channel, interval).await.unwrap_or(false)
    }

    async fn email(&self, to: &[String], subject: &str, body: &str) -> anyhow::Result<()> {
        let (Some(smtp), Some(from)) = (&self.smtp, &self.from) else { return Ok(()) };
        let mut builder = Message::builder().from(from.clone()).subject(subject);
        for t in to {
            builder = builder.to(t.parse().map_err(|e| anyhow::anyhow!("recipient {t}: {e}"))?);
        }
        let msg = builder.body(body.to_owned())?;
        smtp.send(msg).await?;
        Ok(())
    }

    /// Posts `text` to a Slack-style incoming webhook, through the same
    /// address guard as deliveries.
    pub async fn slack(&self, url: &str, text: &str) -> anyhow::Result<()> {
        let url = url::Url::parse(url)?;
        hookline_service_kit::outbound::check_literal(&url, self.allow_private).map_err(anyhow::Error::msg)?;
        self.http
            .post(url)
            .timeout(std::time::Duration::from_secs(10))
            .json(&serde_json::json!({"text": text}))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }
}

fn record(channel: &str, r: anyhow::Result<()>) {
    match r {
        Ok(()) => NOTIFICATIONS.with_label_values(&[channel, "sent"]).inc(),
        Err(e) => {
            NOTIFICATIONS.with_label_values(&[channel, "failed"]).inc();
            tracing::warn!(channel, error = format!("{e:#}"), "sending an alert notification failed");
        }
    }
}
