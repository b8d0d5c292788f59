//! Retry schedules.
//!
//! Attempt 1 is immediate; retry `n` (attempt `n + 1`) waits
//! `initial_delay × multiplier^(n-1)`, capped at `max_delay`. The default is
//! 1 s, ×2, five retries: 1, 2, 4, 8, 16 s, then the delivery is dead-lettered.

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub const MAX_RETRIES_LIMIT: u32 = 20;
pub const MIN_INITIAL_DELAY_MS: u64 = 100;
pub const MAX_DELAY_LIMIT_MS: u64 = 24 * 3600 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub initial_delay_ms: u64,
    pub multiplier: f64,
    pub max_delay_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_retries: 5, initial_delay_ms: 1_000, multiplier: 2.0, max_delay_ms: 3_600_000 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PolicyError {
    pub field: &'static str,
    pub message: String,
}

impl RetryPolicy {
    pub fn validate(&self) -> Result<(), PolicyError> {
        let err = |field, message: String| Err(PolicyError { field, message });
        if self.max_retries > MAX_RETRIES_LIMIT {
            return err("max_retries", format!("must be between 0 and {MAX_RETRIES_LIMIT}"));
        }
        if !(MIN_INITIAL_DELAY_MS..=MAX_DELAY_LIMIT_MS).contains(&self.initial_delay_ms) {
            return err(
                "retry_policy.initial_delay_ms",
                format!("must be between {MIN_INITIAL_DELAY_MS} and {MAX_DELAY_LIMIT_MS}"),
            );
        }
        if !(self.multiplier.is_finite() && (1.0..=10.0).contains(&self.multiplier)) {
            return err("retry_policy.multiplier", "must be between 1.0 and 10.0".into());
        }
        if !(self.initial_delay_ms..=MAX_DELAY_LIMIT_MS).contains(&self.max_delay_ms) {
            return err(
                "retry_policy.max_delay_ms",
                format!("must be between initial_delay_ms and {MAX_DELAY_LIMIT_MS}"),
            );
        }
        Ok(())
    }

    /// What to do after attempt number `attempt` (1-based) failed.
    pub fn after_failure(&self, attempt: u32, retry_after: Option<Duration>) -> NextStep {
        if attempt > self.max_retries {
            return NextStep::DeadLetter;
        }
        let computed = self.delay_before_retry(attempt);
        let delay = match retry_after {
            // Honour the receiver's Retry-After, within the policy's cap.
            Some(ra) => {
                ra.min(Duration::from_millis(self.max_delay_ms)).max(Duration::from_millis(MIN_INITIAL_DELAY_MS))
            }
            None => computed,
        };
        NextStep::RetryAfter(delay)
    }

    /// The wait before retry number `n` (1-based).
    pub fn delay_before_retry(&self, n: u32) -> Duration {
        let exp = self.multiplier.powi(n.saturating_sub(1).min(64) as i32);
        let ms = (self.initial_delay_ms as f64 * exp).min(self.max_delay_ms as f64);
        Duration::from_millis(ms.round() as u64)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextStep {
    RetryAfter(Duration),
    DeadLetter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_is_1_2_4_8_16_then_dead_letter() {
        let p = RetryPolicy::default();
        let delays: Vec<_> = (1..=5)
            .map(|a| match p.after_failure(a, None) {
                NextStep::RetryAfter(d) => d.as_secs(),
                NextStep::DeadLetter => panic!("attempt {a} should retry"),
            })
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 16]);
        assert_eq!(p.after_failure(6, None), NextStep::DeadLetter);
    }

    #[test]
    fn delays_are_capped_and_retry_after_is_honoured_within_the_cap() {
        let p = RetryPolicy { max_retries: 10, initial_delay_ms: 1000, multiplier: 3.0, max_delay_ms: 5000 };
        assert_eq!(p.delay_before_retry(4), Duration::from_secs(5));
        assert_eq!(p.after_failure(1, Some(Duration::from_secs(60))), NextStep::RetryAfter(Duration::from_secs(5)));
        assert_eq!(p.after_failure(1, Some(Duration::from_secs(2))), NextStep::RetryAfter(Duration::from_secs(2)));
    }

    #[test]
    fn zero_retries_dead_letters_after_the_first_attempt() {
        let p = RetryPolicy { max_retries: 0, ..Default::default() };
        assert_eq!(p.after_failure(1, None), NextStep::DeadLetter);
    }

    #[test]
    fn validation_names_the_field() {
        let p = RetryPolicy { max_retries: 21, ..Default::default() };
        assert_eq!(p.validate().unwrap_err().field, "max_retries");
        let p = RetryPolicy { multiplier: 0.5, ..Default::default() };
        assert_eq!(p.validate().unwrap_err().field, "retry_policy.multiplier");
        assert!(RetryPolicy::default().validate().is_ok());
    }
}
