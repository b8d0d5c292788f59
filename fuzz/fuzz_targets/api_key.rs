//! The API key parser and its checksum: never panics, accepts only the
//! documented shape, and what it accepts round-trips.
#![no_main]

use hookline_domain::api_key::{ApiKey, KeyPepper};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(key) = ApiKey::parse(text) {
        assert_eq!(key.expose(), text);
        assert!(text.starts_with("sk_live_"));
        assert!(text.bytes().skip(8).all(|b| b.is_ascii_alphanumeric()));
        let prefix = key.display_prefix();
        assert!(prefix.len() < text.len(), "the display prefix never reveals the key");
        let pepper = KeyPepper::new(b"fuzz-pepper");
        assert_eq!(key.hash(&pepper).as_bytes(), key.hash(&pepper).as_bytes());
        // Changing any one character of the random part breaks the checksum or the shape.
        let mut bytes = text.as_bytes().to_vec();
        let i = 8 + (data.len() % (bytes.len() - 8));
        bytes[i] = if bytes[i] == b'a' { b'b' } else { b'a' };
        let mutated = String::from_utf8(bytes).unwrap();
        if mutated != text {
            assert!(ApiKey::parse(&mutated).is_err(), "a one-character change still parsed: {mutated}");
        }
    }
});
