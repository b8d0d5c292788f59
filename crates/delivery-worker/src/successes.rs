//! Successes alerting must hear of, at most one per endpoint per interval.
//!
//! Alerting judges a success by its endpoint's state in Postgres (the
//! failure rate over the window, the failure and dead-letter streaks), not
//! by the success itself, so the latest success to an endpoint stands for
//! every one before it. While an endpoint fails at a sustained rate every
//! success to it matters (it may bring the rate back under the threshold),
//! but each report costs a confirmed message and a judgement. So the first
//! success of an interval is reported at once and the latest of the rest
//! when the interval ends: alerting is never more than an interval behind,
//! and hears at most one success per endpoint per interval from each
//! worker. Failures are reported one by one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hookline_broker::messages::DeliveryOutcome;
use uuid::Uuid;

/// How often, at most, a worker reports a success to one endpoint.
pub const INTERVAL: Duration = Duration::from_secs(1);
/// Endpoints remembered before the quiet ones are forgotten.
const PRUNE_AT: usize = 10_000;

#[derive(Default)]
pub struct SuccessReports {
    endpoints: Mutex<HashMap<Uuid, Gate>>,
}

struct Gate {
    /// When this endpoint's last success was reported.
    reported_at: Instant,
    /// The latest success since, waiting for the interval to end.
    held: Option<DeliveryOutcome>,
}

/// What to do with a success alerting must hear of.
#[derive(Debug, PartialEq)]
pub enum Offer {
    /// Report it now.
    Now(DeliveryOutcome),
    /// It is held until the interval ends; when `flush_at` is given, nothing
    /// was held before, and the caller must report what is held then (see
    /// [`SuccessReports::take_held`]).
    Held { flush_at: Option<Instant> },
}

impl SuccessReports {
    pub fn offer(&self, endpoint: Uuid, outcome: DeliveryOutcome, now: Instant) -> Offer {
        let mut map = self.endpoints.lock().expect("success reports lock");
        if let Some(g) = map.get_mut(&endpoint) {
            if now.saturating_duration_since(g.reported_at) < INTERVAL {
                let flush_at = g.held.is_none().then(|| g.reported_at + INTERVAL);
                g.held = Some(outcome);
                return Offer::Held { flush_at };
            }
        }
        if map.len() >= PRUNE_AT {
            map.retain(|_, g| g.held.is_some() || now.saturating_duration_since(g.reported_at) < INTERVAL);
        }
        // Anything still held is older than this success, which stands for it.
        map.insert(endpoint, Gate { reported_at: now, held: None });
        Offer::Now(outcome)
    }

    /// The success held for `endpoint`, if any, counted as reported at `now`.
    pub fn take_held(&self, endpoint: Uuid, now: Instant) -> Option<DeliveryOutcome> {
        let mut map = self.endpoints.lock().expect("success reports lock");
        let g = map.get_mut(&endpoint)?;
        let held = g.held.take()?;
        g.reported_at = now;
        Some(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn success(attempt: u32) -> DeliveryOutcome {
        DeliveryOutcome { attempt, ..Default::default() }
    }

    #[test]
    fn the_first_success_goes_at_once_and_the_latest_of_the_rest_at_the_intervals_end() {
        let r = SuccessReports::default();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let t0 = Instant::now();
        assert_eq!(r.offer(a, success(1), t0), Offer::Now(success(1)));
        // Another endpoint has an interval of its own.
        assert_eq!(r.offer(b, success(9), t0), Offer::Now(success(9)));
        let ms = Duration::from_millis;
        assert_eq!(r.offer(a, success(2), t0 + ms(100)), Offer::Held { flush_at: Some(t0 + INTERVAL) });
        assert_eq!(r.offer(a, success(3), t0 + ms(200)), Offer::Held { flush_at: None }, "one flush per interval");
        assert_eq!(r.take_held(a, t0 + INTERVAL), Some(success(3)), "the latest stands for the rest");
        assert_eq!(r.take_held(a, t0 + INTERVAL), None);
        // The flush began a new interval.
        assert_eq!(r.offer(a, success(4), t0 + INTERVAL + ms(10)), Offer::Held { flush_at: Some(t0 + 2 * INTERVAL) });
    }

    #[test]
    fn a_success_after_a_quiet_interval_goes_at_once_and_replaces_a_late_flush() {
        let r = SuccessReports::default();
        let e = Uuid::new_v4();
        let t0 = Instant::now();
        r.offer(e, success(1), t0);
        assert!(matches!(r.offer(e, success(2), t0 + Duration::from_millis(500)), Offer::Held { .. }));
        // The flush is late; a newer success arrives after the interval.
        assert_eq!(r.offer(e, success(3), t0 + INTERVAL + Duration::from_millis(1)), Offer::Now(success(3)));
        assert_eq!(r.take_held(e, t0 + INTERVAL + Duration::from_millis(2)), None, "superseded");
    }
}
