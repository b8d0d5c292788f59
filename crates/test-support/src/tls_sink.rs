//! A TLS-only listener standing in for an OTLP collector: it completes the
//! handshake with the certificate it is given and counts the connections
//! whose decrypted stream opens with the HTTP/2 preface, as gRPC's does.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncReadExt;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

pub struct TlsPrefaceSink {
    pub port: u16,
    grpc: Arc<AtomicUsize>,
}

impl TlsPrefaceSink {
    /// Listens on 127.0.0.1 with `server.pem` and `server.key` from `dir`.
    pub async fn start(dir: &Path) -> Self {
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
            .expect("server.pem")
            .collect::<Result<_, _>>()
            .expect("certificates");
        let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("server.key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server certificate");
        config.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let grpc = Arc::new(AtomicUsize::new(0));
        let seen = grpc.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, seen) = (acceptor.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut first = [0u8; PREFACE.len()];
                    if tls.read_exact(&mut first).await.is_ok() && first == PREFACE {
                        seen.fetch_add(1, Ordering::SeqCst);
                    }
                    // Hold the connection (the client waits for settings) until it goes away.
                    let mut rest = [0u8; 4096];
                    while matches!(tls.read(&mut rest).await, Ok(n) if n > 0) {}
                });
            }
        });
        Self { port, grpc }
    }

    /// Connections that completed the TLS handshake and spoke HTTP/2 inside it.
    pub fn grpc_connections(&self) -> usize {
        self.grpc.load(Ordering::SeqCst)
    }
}
