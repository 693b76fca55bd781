//! TLS for the ingest and admin listeners, with rustls (ring provider, TLS 1.2 and 1.3).
//!
//! Certificates and keys are PEM files, usually a mounted Kubernetes Secret. Kubernetes
//! rotates a mounted Secret in place (it swaps the `..data` symlink), so a listener must pick up
//! a new certificate without a restart: [`ReloadingCertificate`] is the listener's certificate
//! resolver, and [`watch_certificate`] reads the files again every interval and swaps in what
//! changed. A file that does not parse (a half-written rotation) keeps the last good
//! certificate and is tried again on the next tick. Optionally a listener asks for client
//! certificates and verifies them against a CA (`client_ca`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

/// Where one listener's TLS material is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA certificates; when set, clients must present a certificate signed by one.
    pub client_ca: Option<PathBuf>,
}

/// Why TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} holds no PEM certificate", path.display())]
    NoCertificate { path: PathBuf },
    #[error("{} holds no PEM private key", path.display())]
    NoKey { path: PathBuf },
    #[error("the key in {} does not fit the certificate in {}: {source}", key.display(), cert.display())]
    Key {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("the client CA file {} is not usable: {reason}", path.display())]
    ClientCa { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The bytes of a certificate and key file pair, as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MaterialBytes {
    cert: Vec<u8>,
    key: Vec<u8>,
}

fn parse_material(
    settings: &TlsSettings,
    bytes: &MaterialBytes,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&bytes.cert)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: settings.cert.clone(),
        });
    }
    let key = PrivateKeyDer::from_pem_slice(&bytes.key).map_err(|_| TlsError::NoKey {
        path: settings.key.clone(),
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Key {
        cert: settings.cert.clone(),
        key: settings.key.clone(),
        source,
    })
}

/// A listener's certificate, swapped when its files change.
#[derive(Debug)]
pub struct ReloadingCertificate {
    /// The files.
    settings: TlsSettings,
    /// What every new handshake gets.
    current: RwLock<Arc<CertifiedKey>>,
    /// The bytes `current` came from, to tell a change from a re-read of the same files.
    loaded: Mutex<MaterialBytes>,
    /// Parses keys.
    provider: Arc<CryptoProvider>,
}

impl ReloadingCertificate {
    /// Reads the certificate and key; an error here stops the listener from starting.
    pub fn load(settings: &TlsSettings) -> Result<Self, TlsError> {
        let provider = provider();
        let bytes = MaterialBytes {
            cert: read(&settings.cert)?,
            key: read(&settings.key)?,
        };
        let key = parse_material(settings, &bytes, &provider)?;
        Ok(ReloadingCertificate {
            settings: settings.clone(),
            current: RwLock::new(Arc::new(key)),
            loaded: Mutex::new(bytes),
            provider,
        })
    }

    /// Reads the files again; swaps the certificate in and answers true if they changed and
    /// parse. An error leaves the current certificate in place.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let bytes = MaterialBytes {
            cert: read(&self.settings.cert)?,
            key: read(&self.settings.key)?,
        };
        let mut loaded = self.loaded.lock().unwrap_or_else(PoisonError::into_inner);
        if *loaded == bytes {
            return Ok(false);
        }
        let key = parse_material(&self.settings, &bytes, &self.provider)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        *loaded = bytes;
        Ok(true)
    }

    /// The certificate chain new handshakes get (tests, logs).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .cert
            .clone()
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(PoisonError::into_inner),
        ))
    }
}

/// The rustls server configuration of one listener: its reloading certificate, HTTP/1.1, and
/// client certificates verified against `client_ca` when set.
pub fn server_config(
    settings: &TlsSettings,
    certificate: Arc<ReloadingCertificate>,
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?;
    let builder = match &settings.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let client_ca = |reason: String| TlsError::ClientCa {
                path: path.clone(),
                reason,
            };
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(&read(path)?) {
                let cert = cert.map_err(|e| client_ca(e.to_string()))?;
                roots.add(cert).map_err(|e| client_ca(e.to_string()))?;
            }
            if roots.is_empty() {
                return Err(client_ca("no PEM certificate in it".into()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| client_ca(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(certificate);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// How often [`watch_certificate`] reads the files again by default: Kubernetes propagates a
/// rotated Secret within about a minute, so this adds little to that.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// Reads `certificate`'s files again every `interval` until `shutdown` resolves, logging each
/// swap and each failed read (the last good certificate stays).
pub async fn watch_certificate(
    certificate: Arc<ReloadingCertificate>,
    interval: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(interval) => {}
        }
        let reloaded = {
            let certificate = Arc::clone(&certificate);
            tokio::task::spawn_blocking(move || certificate.reload_if_changed()).await
        };
        match reloaded {
            Ok(Ok(true)) => tracing::info!(
                cert = %certificate.settings.cert.display(),
                "TLS certificate changed on disk; new connections get the new one"
            ),
            Ok(Ok(false)) => {}
            Ok(Err(error)) => tracing::warn!(
                error = %crate::telemetry::ErrorChain(&error),
                "reading the TLS certificate again failed; keeping the current one"
            ),
            Err(error) => tracing::error!(%error, "TLS certificate reload task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `name`, as PEM (certificate, key).
    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).expect("params");
        let cert = params.self_signed(&key).expect("certificate");
        (cert.pem(), key.serialize_pem())
    }

    fn write_pair(dir: &Path, cert: &str, key: &str) -> TlsSettings {
        std::fs::write(dir.join("tls.crt"), cert).unwrap();
        std::fs::write(dir.join("tls.key"), key).unwrap();
        TlsSettings {
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
            client_ca: None,
        }
    }

    #[test]
    fn a_rotated_pair_is_swapped_in_and_a_broken_one_keeps_the_last_good() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed("one.example");
        let settings = write_pair(dir.path(), &cert, &key);
        let loaded = ReloadingCertificate::load(&settings).expect("loads");
        let first = loaded.chain();
        assert!(!loaded.reload_if_changed().expect("same files"));

        let (cert, key) = self_signed("two.example");
        write_pair(dir.path(), &cert, &key);
        assert!(loaded.reload_if_changed().expect("rotated"));
        let second = loaded.chain();
        assert_ne!(first, second);

        // Half a rotation: a new certificate beside the old key does not fit it.
        let (cert, _) = self_signed("three.example");
        std::fs::write(dir.path().join("tls.crt"), cert).unwrap();
        match loaded.reload_if_changed() {
            Err(TlsError::Key { .. }) => {}
            other => panic!("expected a key mismatch, got {other:?}"),
        }
        assert_eq!(loaded.chain(), second, "the last good certificate stays");
    }

    #[test]
    fn unusable_files_say_which_and_why() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed("one.example");
        let settings = write_pair(dir.path(), "not a certificate", &key);
        let error = ReloadingCertificate::load(&settings).unwrap_err();
        assert!(matches!(error, TlsError::NoCertificate { .. }), "{error}");
        assert!(error.to_string().contains("tls.crt"), "{error}");

        let settings = write_pair(dir.path(), &cert, "no key here");
        let error = ReloadingCertificate::load(&settings).unwrap_err();
        assert!(matches!(error, TlsError::NoKey { .. }), "{error}");

        let missing = TlsSettings {
            cert: dir.path().join("absent.crt"),
            ..settings
        };
        let error = ReloadingCertificate::load(&missing).unwrap_err();
        assert!(error.to_string().contains("absent.crt"), "{error}");
    }

    #[test]
    fn a_client_ca_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed("one.example");
        let mut settings = write_pair(dir.path(), &cert, &key);
        std::fs::write(dir.path().join("ca.crt"), "empty").unwrap();
        settings.client_ca = Some(dir.path().join("ca.crt"));
        let certificate = Arc::new(ReloadingCertificate::load(&settings).unwrap());
        let error = server_config(&settings, certificate).unwrap_err();
        assert!(matches!(error, TlsError::ClientCa { .. }), "{error}");
    }
}
