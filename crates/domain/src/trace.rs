//! W3C trace context (`traceparent`), carried from the ingest request
//! through the outbox and the broker message to the receiver, so one trace
//! id follows an event all the way.

use std::fmt;

use ring::rand::{SecureRandom, SystemRandom};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    loop {
        SystemRandom::new().fill(&mut b).expect("system random source failed");
        if b.iter().any(|x| *x != 0) {
            return b;
        }
    }
}

impl TraceParent {
    /// A new trace.
    pub fn root() -> Self {
        Self { trace_id: random(), span_id: random(), sampled: true }
    }

    /// The same trace, a new span (the next hop).
    pub fn child(&self) -> Self {
        Self { span_id: random(), ..*self }
    }

    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; None for anything else (a
    /// malformed header starts a new trace rather than failing a request).
    pub fn parse(text: &str) -> Option<Self> {
        let parts: Vec<&str> = text.trim().split('-').collect();
        if parts.len() < 4 || parts[0].len() != 2 || parts[0] == "ff" {
            return None;
        }
        let trace: [u8; 16] = hex::decode(parts[1]).ok()?.try_into().ok()?;
        let span: [u8; 8] = hex::decode(parts[2]).ok()?.try_into().ok()?;
        let flags = u8::from_str_radix(parts[3], 16).ok()?;
        if trace.iter().all(|b| *b == 0) || span.iter().all(|b| *b == 0) || parts[3].len() != 2 {
            return None;
        }
        Some(Self { trace_id: trace, span_id: span, sampled: flags & 1 == 1 })
    }

    pub fn trace_id_hex(&self) -> String {
        hex::encode(self.trace_id)
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "00-{}-{}-{:02x}", hex::encode(self.trace_id), hex::encode(self.span_id), u8::from(self.sampled))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_formats_and_continues_a_trace() {
        let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(tp.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let c = tp.child();
        assert_eq!(c.trace_id, tp.trace_id);
        assert_ne!(c.span_id, tp.span_id);
        for bad in [
            "",
            "00-xyz-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert!(TraceParent::parse(bad).is_none(), "{bad}");
        }
        assert!(TraceParent::parse(&TraceParent::root().to_string()).is_some());
    }
}
