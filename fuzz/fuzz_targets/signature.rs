//! The signature verifiers: arbitrary headers never panic and never verify,
//! while the signature of the same message always does.
#![no_main]

use hookline_domain::signing::{verify_hex, verify_standard, WebhookSecret};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let split = data.len() / 2;
    let (header, body) = data.split_at(split);
    let header = String::from_utf8_lossy(header);
    let ts = i64::from(data.first().copied().unwrap_or(0)) * 1_000_000;
    let good_hex = secret.sign_hex(body);
    let good_std = secret.sign_standard("msg_fuzz", ts, body);
    assert!(verify_hex(&secret, body, &good_hex));
    assert!(verify_standard(&secret, "msg_fuzz", ts, body, &good_std));
    if header != good_hex {
        assert!(!verify_hex(&secret, body, &header));
    }
    if !header.split(' ').any(|c| c == good_std) {
        assert!(!verify_standard(&secret, "msg_fuzz", ts, body, &header));
    }
    // Secrets parse or are refused; never a panic.
    let _ = WebhookSecret::parse(&header);
});
