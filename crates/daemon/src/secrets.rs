//! The keys pushd reads from files: the TLS certificate chain and key, the
//! token secret or public key, and the HTTP API's bearer token. Loaded at start (a file that does not load
//! stops pushd there), and again on SIGHUP or `pushctl reload`, where a file
//! that does not load keeps the previous key in service.
//!
//! Each key sits behind its own lock, held only to clone an `Arc`: a new TLS
//! handshake or token check takes the key current at that moment, and
//! connections already open keep the one they began with, so a reload closes
//! nothing.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use pushd_proto::token::Verifier;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{info, warn};

use crate::config::{AuthKey, TlsFiles};

/// Every reloadable key of the daemon.
#[derive(Debug, Default)]
pub(crate) struct Secrets {
    tls: Option<Reloadable<ServerConfig>>,
    auth: Option<Reloadable<Verifier>>,
    http_token: Option<Reloadable<String>>,
}

/// What a reload did: the keys it replaced, and why the others stayed.
#[derive(Debug, Default)]
pub(crate) struct Reloaded {
    /// What was loaded again (`"TLS certificate"`, `"auth key"`).
    pub(crate) loaded: Vec<&'static str>,
    /// One message per file that did not load; its old key stays in service.
    pub(crate) errors: Vec<String>,
}

impl Secrets {
    /// Loads every key the configuration names; any failure is an error.
    pub(crate) fn load(
        tls: Option<&TlsFiles>,
        auth: Option<&AuthKey>,
        http_token: Option<&PathBuf>,
    ) -> anyhow::Result<Self> {
        Ok(Secrets {
            tls: tls
                .map(|files| Reloadable::new("TLS certificate", tls_loader(files.clone())))
                .transpose()?,
            auth: auth
                .map(|key| Reloadable::new("auth key", auth_loader(key.clone())))
                .transpose()?,
            http_token: http_token
                .map(|path| {
                    let path = path.clone();
                    Reloadable::new("HTTP token", move || read_http_token(&path))
                })
                .transpose()?,
        })
    }

    /// The TLS configuration for a new handshake, with `--tls-cert`.
    pub(crate) fn tls(&self) -> Option<Arc<ServerConfig>> {
        self.tls.as_ref().map(Reloadable::current)
    }

    /// The token verifier for a new bind, with `--auth token`.
    pub(crate) fn verifier(&self) -> Option<Arc<Verifier>> {
        self.auth.as_ref().map(Reloadable::current)
    }

    /// The bearer token HTTP API requests must carry, with `--http-token-file`.
    pub(crate) fn http_token(&self) -> Option<Arc<String>> {
        self.http_token.as_ref().map(Reloadable::current)
    }

    /// Whether clients must present tokens.
    pub(crate) fn has_auth(&self) -> bool {
        self.auth.is_some()
    }

    /// Reads every key file again; each that loads replaces its key.
    pub(crate) fn reload(&self) -> Reloaded {
        let mut reloaded = Reloaded::default();
        let slots: [Option<&dyn Reload>; 3] = [
            self.tls.as_ref().map(|s| s as &dyn Reload),
            self.auth.as_ref().map(|s| s as &dyn Reload),
            self.http_token.as_ref().map(|s| s as &dyn Reload),
        ];
        for slot in slots.into_iter().flatten() {
            match slot.reload() {
                Ok(what) => reloaded.loaded.push(what),
                Err(err) => reloaded.errors.push(err),
            }
        }
        reloaded
    }
}

/// A key and how to load it again.
struct Reloadable<T> {
    what: &'static str,
    load: Box<dyn Fn() -> anyhow::Result<T> + Send + Sync>,
    current: RwLock<Arc<T>>,
}

impl<T> std::fmt::Debug for Reloadable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Reloadable({})", self.what)
    }
}

impl<T> Reloadable<T> {
    fn new(
        what: &'static str,
        load: impl Fn() -> anyhow::Result<T> + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        let first = load()?;
        Ok(Reloadable {
            what,
            load: Box::new(load),
            current: RwLock::new(Arc::new(first)),
        })
    }

    fn current(&self) -> Arc<T> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Reloading, whatever the key's type.
trait Reload {
    /// Loads the files again: the key's name, or why the old one stays.
    fn reload(&self) -> Result<&'static str, String>;
}

impl<T> Reload for Reloadable<T> {
    fn reload(&self) -> Result<&'static str, String> {
        match (self.load)() {
            Ok(fresh) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fresh);
                info!("{} reloaded", self.what);
                Ok(self.what)
            }
            Err(err) => {
                let err = format!("{err:#}; the previous {} stays in use", self.what);
                warn!("reload: {err}");
                Err(err)
            }
        }
    }
}

fn tls_loader(files: TlsFiles) -> impl Fn() -> anyhow::Result<ServerConfig> {
    move || load_tls(&files.cert, &files.key)
}

fn auth_loader(key: AuthKey) -> impl Fn() -> anyhow::Result<Verifier> {
    move || {
        Ok(match &key {
            AuthKey::Secret(path) => Verifier::new(&pushd_proto::token::read_secret_file(path)?),
            AuthKey::PublicKey(path) => Verifier::from_public_key_file(path)?,
        })
    }
}

/// Shortest accepted HTTP API token: it is a password sent with every request.
const MIN_HTTP_TOKEN: usize = 16;

/// The bearer token in `path`, surrounding whitespace not part of it.
fn read_http_token(path: &PathBuf) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the HTTP token file {}", path.display()))?;
    let token = text.trim();
    anyhow::ensure!(
        token.len() >= MIN_HTTP_TOKEN && token.bytes().all(|b| b.is_ascii_graphic()),
        "the HTTP token in {} must be at least {MIN_HTTP_TOKEN} printable ASCII characters",
        path.display()
    );
    Ok(token.to_owned())
}

/// A rustls server configuration from a PEM certificate chain and key.
fn load_tls(cert: &PathBuf, key: &PathBuf) -> anyhow::Result<ServerConfig> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read the TLS certificate {}", cert.display()))?;
    anyhow::ensure!(
        !chain.is_empty(),
        "no certificate in {} (PEM, `-----BEGIN CERTIFICATE-----`)",
        cert.display()
    );
    let private = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the TLS key {}", key.display()))?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .with_context(|| {
            format!(
                "the TLS key {} does not go with the certificate {}",
                key.display(),
                cert.display()
            )
        })?;
    // WebSocket handshakes are HTTP/1.1.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
