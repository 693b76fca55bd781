//! TLS on the listeners (docs/security.md, "TLS"): a client that trusts the CA posts, a plain
//! HTTP client gets nothing, a rotated certificate is served without a restart, and client
//! certificates are required when a client CA is configured.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, ServerName};
use tenant_gateway::tls::TlsSettings;

use crate::support::{lifecycle_event, TestApp};

/// A CA that signs server and client certificates for the test.
struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa { cert, key }
    }

    /// A leaf for 127.0.0.1 and localhost: (certificate PEM, key PEM, certificate DER).
    fn leaf(&self) -> (String, String, Vec<u8>) {
        let key = KeyPair::generate().expect("leaf key");
        let params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .expect("leaf params");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("leaf certificate");
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    fn pem(&self) -> String {
        self.cert.pem()
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    // Written whole, then renamed, as Kubernetes swaps a Secret's files.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).expect("write");
    std::fs::rename(&tmp, &path).expect("rename");
    path
}

/// The certificate the listener at `addr` presents to a client trusting `roots`.
fn served_certificate(addr: SocketAddr, roots: &[CertificateDer<'static>]) -> Vec<u8> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocols")
    .with_root_certificates(store)
    .with_no_client_auth();
    let name = ServerName::try_from("127.0.0.1").expect("name");
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name).expect("client");
    let mut socket = TcpStream::connect(addr).expect("connect");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    while connection.is_handshaking() {
        connection.complete_io(&mut socket).expect("TLS handshake");
    }
    let certs: Vec<CertificateDer<'_>> = connection
        .peer_certificates()
        .expect("server certificates")
        .to_vec();
    certs[0].to_vec()
}

fn https_client(ca: &TestCa, identity: Option<(&str, &str)>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(ca.pem().as_bytes()).expect("CA for reqwest"),
        );
    if let Some((cert, key)) = identity {
        let pem = format!("{cert}{key}");
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    builder.build().expect("client")
}

async fn post(client: &reqwest::Client, url: &str, id: &str) -> reqwest::Result<u16> {
    client
        .post(url)
        .header("content-type", "application/cloudevents+json")
        .body(lifecycle_event(id, "acme", "upsert").to_string())
        .send()
        .await
        .map(|response| response.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_trusting_the_ca_posts_a_plain_one_gets_nothing_and_rotation_needs_no_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("test CA one");
    let (cert, key, first_der) = ca.leaf();
    let settings = TlsSettings {
        cert: write(dir.path(), "tls.crt", &cert),
        key: write(dir.path(), "tls.key", &key),
        client_ca: None,
    };
    let app = TestApp::spawn_with(|s| {
        s.tls = Some(settings.clone());
        s.tls_reload_interval = Duration::from_millis(50);
    })
    .await;
    let url = format!("https://127.0.0.1:{}/events", app.addr.port());
    assert_eq!(
        post(&https_client(&ca, None), &url, "tls-1").await.unwrap(),
        202
    );

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(app.addr).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&answer)
    );
    let plain_url = format!("http://127.0.0.1:{}/events", app.addr.port());
    assert!(post(&reqwest::Client::new(), &plain_url, "tls-plain")
        .await
        .is_err());

    // Rotate to a certificate of another CA, in place: new connections get it.
    let other = TestCa::new("test CA two");
    let (cert, key, second_der) = other.leaf();
    write(dir.path(), "tls.key", &key);
    write(dir.path(), "tls.crt", &cert);
    let roots = vec![ca.cert.der().clone(), other.cert.der().clone()];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let served = tokio::task::spawn_blocking({
            let (addr, roots) = (app.addr, roots.clone());
            move || served_certificate(addr, &roots)
        })
        .await
        .expect("handshake task");
        if served == second_der {
            break;
        }
        assert_eq!(
            served, first_der,
            "only the old or the new certificate is served"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the rotated certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        post(&https_client(&other, None), &url, "tls-2")
            .await
            .unwrap(),
        202,
        "a client of the new CA posts without a restart"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_ca_makes_client_certificates_mandatory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = TestCa::new("test CA");
    let (cert, key, _) = ca.leaf();
    let clients = TestCa::new("client CA");
    let settings = TlsSettings {
        cert: write(dir.path(), "tls.crt", &cert),
        key: write(dir.path(), "tls.key", &key),
        client_ca: Some(write(dir.path(), "clients.crt", &clients.pem())),
    };
    let app = TestApp::spawn_with(|s| s.tls = Some(settings.clone())).await;
    let url = format!("https://127.0.0.1:{}/events", app.addr.port());
    assert!(
        post(&https_client(&ca, None), &url, "mtls-0")
            .await
            .is_err(),
        "no client certificate: the handshake fails"
    );
    let stranger = TestCa::new("another CA");
    let (stranger_cert, stranger_key, _) = stranger.leaf();
    assert!(
        post(
            &https_client(&ca, Some((&stranger_cert, &stranger_key))),
            &url,
            "mtls-1"
        )
        .await
        .is_err(),
        "a certificate of another CA is refused"
    );
    let (client_cert, client_key, _) = clients.leaf();
    assert_eq!(
        post(
            &https_client(&ca, Some((&client_cert, &client_key))),
            &url,
            "mtls-2"
        )
        .await
        .unwrap(),
        202
    );
    app.stop().await;
}
