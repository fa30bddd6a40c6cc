//! TLS for the external listener: a rustls server config loaded from PEM
//! files, swapped whole on SIGHUP so a renewed certificate takes effect for
//! new connections while established flows keep their sessions.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_rustls::TlsAcceptor;

/// Why a certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The certificate file holds no certificate.
    #[error("{0}: no certificate found in PEM file")]
    NoCertificate(PathBuf),
    /// The key file holds no private key.
    #[error("{0}: no private key found in PEM file")]
    NoKey(PathBuf),
    /// rustls refused the pair (e.g. key does not match the certificate).
    #[error("certificate {cert} / key {key}: {source}")]
    Rustls {
        /// Certificate file.
        cert: PathBuf,
        /// Key file.
        key: PathBuf,
        /// The rustls error.
        source: rustls::Error,
    },
}

/// Builds a rustls server config from a PEM certificate chain and key.
pub fn load_server_config(cert: &Path, key: &Path) -> Result<rustls::ServerConfig, TlsError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|source| TlsError::Read {
            path: p.to_path_buf(),
            source,
        })
    };
    let cert_pem = read(cert)?;
    let key_pem = read(key)?;
    let chain: Vec<_> = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_path_buf()));
    }
    let private = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .ok()
        .flatten()
        .ok_or_else(|| TlsError::NoKey(key.to_path_buf()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, private))
        .map_err(|source| TlsError::Rustls {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        })
}

/// The current acceptor, replaceable at run time.
#[derive(Clone)]
pub struct TlsState {
    acceptor: Arc<ArcSwap<TlsAcceptor>>,
    cert: PathBuf,
    key: PathBuf,
}

impl std::fmt::Debug for TlsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsState")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

impl TlsState {
    /// Loads the pair once; fails start-up when it is unusable.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let config = load_server_config(cert, key)?;
        Ok(TlsState {
            acceptor: Arc::new(ArcSwap::from_pointee(TlsAcceptor::from(Arc::new(config)))),
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
        })
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> Arc<TlsAcceptor> {
        self.acceptor.load_full()
    }

    /// Reloads the files; on error the previous pair stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = load_server_config(&self.cert, &self.key)?;
        self.acceptor
            .store(Arc::new(TlsAcceptor::from(Arc::new(config))));
        Ok(())
    }
}
