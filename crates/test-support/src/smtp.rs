//! A local SMTP sink: accepts every message and records it, so alert emails
//! are tested over a real SMTP conversation.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
}

#[derive(Clone)]
pub struct SmtpSink {
    pub port: u16,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp sink");
        let port = listener.local_addr().expect("addr").port();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let m = mails.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let m = m.clone();
                tokio::spawn(async move {
                    let (r, mut w) = stream.into_split();
                    let mut lines = BufReader::new(r).lines();
                    let _ = w.write_all(b"220 sink ESMTP\r\n").await;
                    let (mut from, mut to, mut data, mut in_data) = (String::new(), Vec::new(), String::new(), false);
                    while let Ok(Some(line)) = lines.next_line().await {
                        if in_data {
                            if line == "." {
                                in_data = false;
                                m.lock().unwrap().push(Mail {
                                    from: from.clone(),
                                    to: std::mem::take(&mut to),
                                    data: std::mem::take(&mut data),
                                });
                                let _ = w.write_all(b"250 queued\r\n").await;
                            } else {
                                data.push_str(line.strip_prefix('.').unwrap_or(&line));
                                data.push('\n');
                            }
                            continue;
                        }
                        let upper = line.to_ascii_uppercase();
                        let reply: &[u8] = if upper.starts_with("EHLO") {
                            b"250-sink\r\n250 8BITMIME\r\n"
                        } else if upper.starts_with("MAIL FROM:") {
                            from = line[10..].trim().trim_matches(['<', '>']).to_owned();
                            b"250 ok\r\n"
                        } else if upper.starts_with("RCPT TO:") {
                            to.push(line[8..].trim().trim_matches(['<', '>']).to_owned());
                            b"250 ok\r\n"
                        } else if upper == "DATA" {
                            in_data = true;
                            b"354 go ahead\r\n"
                        } else if upper == "QUIT" {
                            let _ = w.write_all(b"221 bye\r\n").await;
                            return;
                        } else {
                            b"250 ok\r\n"
                        };
                        if w.write_all(reply).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Self { port, mails }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}
