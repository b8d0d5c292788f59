//! The event payload validator: any bytes, as JSON, are either accepted by
//! the built-in schemas or refused with a path and message; never a panic.
#![no_main]

use std::sync::OnceLock;

use hookline_domain::event::{builtin_schemas, PayloadSchema};
use libfuzzer_sys::fuzz_target;

fn schemas() -> &'static std::collections::BTreeMap<&'static str, PayloadSchema> {
    static S: OnceLock<std::collections::BTreeMap<&'static str, PayloadSchema>> = OnceLock::new();
    S.get_or_init(builtin_schemas)
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    for schema in schemas().values() {
        if let Err(violations) = schema.validate(&value) {
            assert!(!violations.is_empty());
            assert!(violations.iter().all(|v| !v.message.is_empty()));
        }
    }
    // A custom schema from the same bytes compiles or is refused cleanly.
    if let Ok(custom) = PayloadSchema::compile(&value) {
        let _ = custom.validate(&serde_json::json!({"id": "l1"}));
    }
});
