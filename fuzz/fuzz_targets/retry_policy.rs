//! The retry policy, as parsed from an endpoint's JSON: a policy that
//! validates gives waits that never shrink, stay within its bounds, and end
//! in the dead-letter queue after `max_retries`.
#![no_main]

use std::time::Duration;

use hookline_domain::retry::{NextStep, RetryPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(policy) = serde_json::from_slice::<RetryPolicy>(data) else { return };
    if policy.validate().is_err() {
        return;
    }
    let mut last = Duration::ZERO;
    for attempt in 1..=policy.max_retries {
        match policy.after_failure(attempt, None) {
            NextStep::RetryAfter(d) => {
                assert!(d >= last, "waits never shrink");
                assert!(d <= Duration::from_millis(policy.max_delay_ms) + Duration::from_millis(1));
                assert!(
                    d + Duration::from_millis(1)
                        >= Duration::from_millis(policy.initial_delay_ms.min(policy.max_delay_ms))
                );
                last = d;
            }
            NextStep::DeadLetter => panic!("attempt {attempt} of {} dead-lettered early", policy.max_retries),
        }
    }
    assert_eq!(policy.after_failure(policy.max_retries + 1, None), NextStep::DeadLetter);
    let hinted =
        policy.after_failure(1.min(policy.max_retries.max(1)), Some(Duration::from_secs(u64::from(data[0]) * 1000)));
    if let NextStep::RetryAfter(d) = hinted {
        assert!(d <= Duration::from_millis(policy.max_delay_ms));
    }
});
