//! Where a delivery stands, why an outbox row was written, which rule an
//! alert answers to. Stored as text (`deliveries.status`, `outbox.reason`,
//! `alerts.rule`); these types are the only place the names are written.

use std::fmt;
use std::str::FromStr;

/// The state of one delivery of one event to one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt's message.
    Pending,
    /// An attempt was answered 2xx.
    Delivered,
    /// The last attempt failed and a retry is scheduled.
    Failed,
    /// Every retry failed; it waits to be sent again by hand.
    DeadLetter,
    /// Its endpoint was deleted or disabled before it was delivered.
    Cancelled,
    /// Waits in its lane (ordered delivery) for the deliveries ahead of it.
    Blocked,
}

impl DeliveryStatus {
    pub const ALL: [Self; 6] =
        [Self::Pending, Self::Delivered, Self::Failed, Self::DeadLetter, Self::Cancelled, Self::Blocked];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::DeadLetter => "dead_letter",
            Self::Cancelled => "cancelled",
            Self::Blocked => "blocked",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether it may be sent again by hand (retry, recover).
    pub fn retryable(self) -> bool {
        matches!(self, Self::Failed | Self::DeadLetter)
    }

    /// Whether an attempt may still be scheduled for it.
    pub fn awaits_attempt(self) -> bool {
        matches!(self, Self::Pending | Self::Failed)
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a delivery status")]
pub struct UnknownStatus(pub String);

impl FromStr for DeliveryStatus {
    type Err = UnknownStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s).ok_or_else(|| UnknownStatus(s.to_owned()))
    }
}

impl TryFrom<String> for DeliveryStatus {
    type Error = UnknownStatus;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DeliveryStatus> for String {
    fn from(s: DeliveryStatus) -> Self {
        s.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_reads_back_from_its_name() {
        for s in DeliveryStatus::ALL {
            assert_eq!(DeliveryStatus::parse(s.as_str()), Some(s));
            assert_eq!(String::from(s).parse::<DeliveryStatus>().unwrap(), s);
        }
        assert!("delivering".parse::<DeliveryStatus>().is_err());
        for r in OutboxReason::ALL {
            assert_eq!(OutboxReason::parse(r.as_str()), Some(r));
        }
        for r in AlertRule::ALL {
            assert_eq!(AlertRule::try_from(r.as_str().to_owned()).unwrap(), r);
        }
    }
}

/// Why an outbox row was written, and so what the delivery task it becomes
/// says of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxReason {
    /// An event's first deliveries.
    Fresh,
    /// Sent again by hand: a retry, a recover, a test event.
    Manual,
    /// A scheduled retry whose message was lost, sent again by the sweeper.
    Retry,
}

impl OutboxReason {
    pub const ALL: [Self; 3] = [Self::Fresh, Self::Manual, Self::Retry];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fresh => "fresh",
            Self::Manual => "manual",
            Self::Retry => "retry",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an outbox reason")]
pub struct UnknownReason(pub String);

impl TryFrom<String> for OutboxReason {
    type Error = UnknownReason;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s).ok_or(UnknownReason(s))
    }
}

impl From<OutboxReason> for String {
    fn from(r: OutboxReason) -> Self {
        r.as_str().to_owned()
    }
}

/// The failure rules alerting evaluates; an alert is opened by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AlertRule {
    /// An endpoint failed several times in a row.
    EndpointFailing,
    /// A delivery exhausted its retries.
    DeliveryDeadLettered,
    /// An endpoint was disabled (failing too long, or 410 Gone).
    EndpointDisabled,
    /// An endpoint's failure rate over the window passed the threshold.
    HighFailureRate,
}

impl AlertRule {
    pub const ALL: [Self; 4] =
        [Self::EndpointFailing, Self::DeliveryDeadLettered, Self::EndpointDisabled, Self::HighFailureRate];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::EndpointFailing => "endpoint_failing",
            Self::DeliveryDeadLettered => "delivery_dead_lettered",
            Self::EndpointDisabled => "endpoint_disabled",
            Self::HighFailureRate => "high_failure_rate",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for AlertRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not an alert rule")]
pub struct UnknownRule(pub String);

impl TryFrom<String> for AlertRule {
    type Error = UnknownRule;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s).ok_or(UnknownRule(s))
    }
}
