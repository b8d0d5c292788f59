//! A Hookline webhook receiver in plain Rust (std, ring, base64, hex).
//!
//! Verifies both signatures on every delivery: `X-Webhook-Signature` (hex
//! HMAC-SHA256 of the raw body keyed with the whole `whsec_…` secret) and
//! `webhook-signature` (Standard Webhooks: base64 HMAC-SHA256 of
//! "{webhook-id}.{webhook-timestamp}.{body}" keyed with the decoded secret,
//! with the timestamp checked against replays). Dedupes on the delivery id.
//!
//!     WEBHOOK_SECRET=whsec_... PORT=3000 cargo run -p hookline --example receiver

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::hmac;

const TOLERANCE_SECONDS: i64 = 300;

fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn valid_hex(secret: &str, body: &[u8], header: &str) -> bool {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    equal(hex::encode(hmac::sign(&key, body).as_ref()).as_bytes(), header.as_bytes())
}

fn valid_standard(secret: &str, id: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let Ok(ts) = timestamp.parse::<i64>() else { return false };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    if (now - ts).abs() > TOLERANCE_SECONDS {
        return false;
    }
    let Some(encoded) = secret.strip_prefix("whsec_") else { return false };
    let Ok(raw) = B64.decode(encoded) else { return false };
    let key = hmac::Key::new(hmac::HMAC_SHA256, &raw);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(format!("{id}.{timestamp}.").as_bytes());
    ctx.update(body);
    let expected = format!("v1,{}", B64.encode(ctx.sign().as_ref()));
    // During a secret rotation the header holds one "v1,…" entry per secret.
    header.split(' ').any(|sig| equal(sig.as_bytes(), expected.as_bytes()))
}

fn reply(stream: &mut TcpStream, status: &str, body: &str) {
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn handle(mut stream: TcpStream, secret: &str, seen: &Mutex<BTreeMap<String, String>>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut headers = BTreeMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
        }
    }
    let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; len];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let h = |k: &str| headers.get(k).map(String::as_str).unwrap_or("");
    if request_line.starts_with("GET /received") {
        let list: Vec<String> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|(id, ev)| format!("{{\"delivery_id\":\"{id}\",\"event\":\"{ev}\"}}"))
            .collect();
        return reply(&mut stream, "200 OK", &format!("[{}]", list.join(",")));
    }
    if !valid_hex(secret, &body, h("x-webhook-signature"))
        || !valid_standard(secret, h("webhook-id"), h("webhook-timestamp"), &body, h("webhook-signature"))
    {
        return reply(&mut stream, "401 Unauthorized", r#"{"error":"invalid signature"}"#);
    }
    // Only now parse the body; process each delivery id once.
    seen.lock()
        .unwrap()
        .entry(h("x-webhook-delivery-id").to_owned())
        .or_insert_with(|| h("x-webhook-event").to_owned());
    reply(&mut stream, "200 OK", r#"{"status":"received"}"#);
}

fn main() {
    let secret = std::env::var("WEBHOOK_SECRET").expect("WEBHOOK_SECRET");
    let port = std::env::var("PORT").unwrap_or_else(|_| "3000".into());
    let listener = TcpListener::bind(format!("127.0.0.1:{port}")).expect("bind");
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    for stream in listener.incoming().flatten() {
        let (secret, seen) = (secret.clone(), seen.clone());
        std::thread::spawn(move || handle(stream, &secret, &seen));
    }
}
