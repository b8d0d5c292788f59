//! A recording webhook receiver over real sockets.
//!
//! It speaks just enough HTTP/1.1 (keep-alive, Content-Length bodies) to be
//! told exactly how to misbehave: answer any status, fail the first N
//! requests, hang, answer slowly, add `Retry-After`, or reset the
//! connection. Every request is recorded with whether each signature
//! scheme verified against the secrets it was given.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hookline_domain::signing::{verify_hex, verify_standard, WebhookSecret};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone)]
pub enum Behaviour {
    /// 200 with a small JSON body.
    Ok,
    /// Always this status.
    Status(u16),
    /// `status` for the first `n` requests, then 200.
    FailFirst { n: usize, status: u16 },
    /// This status with `Retry-After: secs`.
    RetryAfter { status: u16, secs: u64 },
    /// Accept the request and never answer.
    Hang,
    /// Answer 200 after this long.
    Slow(Duration),
    /// Close the connection with a TCP reset instead of answering.
    Reset,
    /// 302 to this URL.
    Redirect(String),
    /// A hostile endpoint, request by request: 30 % answer 500, some reset
    /// the connection, some hang, one in fifty answers a 50 MiB body, the
    /// rest 200. Deterministic in the request count.
    Chaotic,
    /// This status with these body bytes and one extra header line's value
    /// bytes (`X-Raw: …`), whatever they hold.
    Raw { status: u16, body: Vec<u8>, header: Vec<u8> },
    /// `status` for requests whose body contains `needle`, 200 for the rest.
    FailMatching { needle: String, status: u16 },
    /// After `delay`, 500 for about `percent` in a hundred requests, 200 for
    /// the rest. Deterministic in the request count.
    Flaky { percent: u8, delay: Duration },
}

#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    /// Lower-case header names.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    pub at: Instant,
    /// `X-Webhook-Signature` verified against one of the secrets.
    pub hex_valid: bool,
    /// `webhook-signature` verified against one of the secrets.
    pub standard_valid: bool,
    /// The status this receiver answered (0 for hang/reset).
    pub answered: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

struct State {
    behaviour: Behaviour,
    secrets: Vec<WebhookSecret>,
    received: Vec<Received>,
    served: usize,
}

#[derive(Clone)]
pub struct TestReceiver {
    pub port: u16,
    state: Arc<Mutex<State>>,
    connections: Arc<Mutex<Connections>>,
}

/// Connections accepted in all, open now, and open at most at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Connections {
    pub accepted: usize,
    pub open: usize,
    pub peak: usize,
}

impl TestReceiver {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind receiver");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(Mutex::new(State {
            behaviour: Behaviour::Ok,
            secrets: Vec::new(),
            received: Vec::new(),
            served: 0,
        }));
        let st = state.clone();
        let connections = Arc::new(Mutex::new(Connections::default()));
        let conns = connections.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                {
                    let mut c = conns.lock().unwrap();
                    c.accepted += 1;
                    c.open += 1;
                    c.peak = c.peak.max(c.open);
                }
                let (st, conns) = (st.clone(), conns.clone());
                tokio::spawn(async move {
                    handle(stream, st).await;
                    conns.lock().unwrap().open -= 1;
                });
            }
        });
        Self { port, state, connections }
    }

    pub fn connections(&self) -> Connections {
        *self.connections.lock().unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn set(&self, behaviour: Behaviour) {
        self.state.lock().unwrap().behaviour = behaviour;
    }

    /// Secrets that signatures are verified against.
    pub fn set_secrets(&self, secrets: &[&str]) {
        self.state.lock().unwrap().secrets =
            secrets.iter().map(|s| WebhookSecret::parse(s).expect("whsec_ secret")).collect();
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    pub fn count(&self) -> usize {
        self.state.lock().unwrap().received.len()
    }
}

async fn handle(mut stream: TcpStream, state: Arc<Mutex<State>>) {
    let mut buf = Vec::with_capacity(8192);
    loop {
        // Read one request: headers, then Content-Length bytes.
        let header_end = loop {
            if let Some(i) = find(&buf, b"\r\n\r\n") {
                break i;
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..header_end]).to_string();
        let mut lines = head.split("\r\n");
        let path = lines.next().and_then(|l| l.split(' ').nth(1)).unwrap_or("/").to_owned();
        let mut headers = HashMap::new();
        for l in lines {
            if let Some((k, v)) = l.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        while buf.len() < header_end + 4 + len {
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let body = buf[header_end + 4..header_end + 4 + len].to_vec();
        buf.drain(..header_end + 4 + len);

        let (behaviour, hex_valid, standard_valid) = {
            let st = state.lock().unwrap();
            let hex_valid = headers
                .get("x-webhook-signature")
                .is_some_and(|sig| st.secrets.iter().any(|s| verify_hex(s, &body, sig)));
            let standard_valid = match (
                headers.get("webhook-id"),
                headers.get("webhook-timestamp").and_then(|t| t.parse::<i64>().ok()),
                headers.get("webhook-signature"),
            ) {
                (Some(id), Some(ts), Some(sig)) => st.secrets.iter().any(|s| verify_standard(s, id, ts, &body, sig)),
                _ => false,
            };
            (st.behaviour.clone(), hex_valid, standard_valid)
        };
        let (status, extra): (u16, String) = match &behaviour {
            Behaviour::Ok => (200, String::new()),
            Behaviour::Status(s) => (*s, String::new()),
            Behaviour::FailFirst { n, status } => {
                let served = state.lock().unwrap().served;
                if served < *n {
                    (*status, String::new())
                } else {
                    (200, String::new())
                }
            }
            Behaviour::RetryAfter { status, secs } => (*status, format!("Retry-After: {secs}\r\n")),
            Behaviour::Hang | Behaviour::Reset => (0, String::new()),
            Behaviour::Slow(_) => (200, String::new()),
            Behaviour::Redirect(to) => (302, format!("Location: {to}\r\n")),
            Behaviour::Raw { status, .. } => (*status, String::new()),
            Behaviour::FailMatching { needle, status } => match find(&body, needle.as_bytes()) {
                Some(_) => (*status, String::new()),
                None => (200, String::new()),
            },
            Behaviour::Flaky { percent, .. } => {
                let h = (state.lock().unwrap().served as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                if h % 100 < u64::from(*percent) {
                    (500, String::new())
                } else {
                    (200, String::new())
                }
            }
            Behaviour::Chaotic => match chaos_kind(state.lock().unwrap().served) {
                ChaosKind::Fail => (500, String::new()),
                ChaosKind::Hang | ChaosKind::Reset => (0, String::new()),
                ChaosKind::Huge | ChaosKind::Ok => (200, String::new()),
            },
        };
        let kind = chaos_kind(state.lock().unwrap().served);
        {
            let mut st = state.lock().unwrap();
            st.served += 1;
            st.received.push(Received {
                path,
                headers,
                body,
                at: Instant::now(),
                hex_valid,
                standard_valid,
                answered: status,
            });
        }
        match behaviour {
            Behaviour::Chaotic if kind == ChaosKind::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Behaviour::Chaotic if kind == ChaosKind::Reset => {
                let _ = stream.set_zero_linger();
                return;
            }
            Behaviour::Chaotic if kind == ChaosKind::Huge => {
                let head =
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {HUGE}\r\n\r\n");
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let block = vec![b' '; 1 << 20];
                for _ in 0..HUGE / block.len() {
                    if stream.write_all(&block).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            Behaviour::Hang => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                return;
            }
            Behaviour::Reset => {
                let _ = stream.set_zero_linger();
                return;
            }
            Behaviour::Slow(d) | Behaviour::Flaky { delay: d, .. } => tokio::time::sleep(d).await,
            Behaviour::Raw { status, body, header } => {
                let mut response = format!("HTTP/1.1 {status} {}\r\nX-Raw: ", reason(status)).into_bytes();
                response.extend(header.iter().filter(|b| !matches!(b, b'\r' | b'\n')));
                response.extend(format!("\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes());
                response.extend(&body);
                if stream.write_all(&response).await.is_err() {
                    return;
                }
                continue;
            }
            _ => {}
        }
        let reply = br#"{"status":"received"}"#;
        let response = format!(
            "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{extra}\r\n",
            reason(status),
            reply.len()
        );
        if stream.write_all(response.as_bytes()).await.is_err() || stream.write_all(reply).await.is_err() {
            return;
        }
    }
}

const HUGE: usize = 50 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChaosKind {
    Ok,
    Fail,
    Reset,
    Hang,
    Huge,
}

/// What the `served`-th request to a chaotic receiver gets (the count is
/// taken before this request is recorded).
fn chaos_kind(served: usize) -> ChaosKind {
    // A multiplicative hash spreads the kinds without a random generator.
    let h = (served as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
    match h % 100 {
        0..=29 => ChaosKind::Fail,
        30..=34 => ChaosKind::Reset,
        35..=37 => ChaosKind::Hang,
        38..=39 => ChaosKind::Huge,
        _ => ChaosKind::Ok,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        410 => "Gone",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
