//! TLS for MQTT (port 8883) and for the HTTP listener (HTTPS, WSS), with rustls.
//!
//! Where it sits: [`crate::run`] loads a [`Tls`] from the `[tls]` table when one is configured.
//! The MQTT over TLS accept loop ([`serve_mqtts`]) and the HTTP listener ([`crate::http`]) each
//! finish the TLS handshake in the connection's own task (bounded in time), then hand the
//! decrypted stream to the same handlers plain TCP uses, with
//! [`ConnectionMeta::cert_cn`] naming the verified client certificate, if any.
//!
//! Reloading: the rustls `ServerConfig` sits behind a `std::sync::RwLock<Arc<_>>` read once per
//! accepted connection; [`Tls::reload`] (called on SIGHUP) reads the files again and swaps it.
//! Established connections keep the configuration they started with. A reload that fails
//! (missing file, key not matching) keeps the previous configuration and says why.
//!
//! Client certificates: with `client_ca` set, a client certificate signed by that CA is
//! verified, and its subject common name becomes the connection's authenticated user name. With
//! `client_cert_required = false` (the default) clients without a certificate are still
//! accepted and authenticate as usual.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{Broker, Transport};
use crate::security::ConnectionMeta;

/// Default MQTT over TLS listener, used when `[tls]` is configured and `[listeners] mqtts` is
/// not.
pub const DEFAULT_MQTTS: &str = "0.0.0.0:8883";

/// The `[tls]` table. Relative paths are relative to the working directory.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, server certificate first (`switchboard cert` writes
    /// `server.pem`).
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the certificate (`server-key.pem`).
    pub key: PathBuf,
    /// PEM CA certificates that sign client certificates. Set: clients may present a
    /// certificate, and its common name becomes their user name.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    /// Refuse clients without a valid certificate (needs `client_ca`).
    #[serde(default)]
    pub client_cert_required: bool,
}

/// The loaded TLS configuration, reloadable.
#[derive(Debug)]
pub struct Tls {
    config: TlsConfig,
    /// The configuration new connections use. Read (and the `Arc` cloned) once per accepted
    /// connection, replaced by [`Tls::reload`]; a std `RwLock` because it is never held across
    /// an `.await`.
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Loads the certificate, key and client CA named by `config`.
    ///
    /// # Errors
    /// When a file cannot be read or parsed, the key does not match the certificate, or
    /// `client_cert_required` is set without `client_ca`.
    pub fn load(config: &TlsConfig) -> anyhow::Result<Arc<Self>> {
        let server = server_config(config)?;
        Ok(Arc::new(Self {
            config: config.clone(),
            current: RwLock::new(Arc::new(server)),
        }))
    }

    /// Reads the files again and uses them for new connections. On error the previous
    /// configuration stays in force.
    ///
    /// # Errors
    /// As [`Tls::load`].
    pub fn reload(&self) -> anyhow::Result<()> {
        let server = server_config(&self.config)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(server);
        tracing::info!(cert = %self.config.cert.display(), "TLS certificate reloaded");
        Ok(())
    }

    /// The rustls configuration new connections get.
    #[must_use]
    pub fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Runs the server side of a TLS handshake over `stream`, within `deadline`, and returns
    /// the encrypted stream with the verified client certificate's common name.
    ///
    /// # Errors
    /// The handshake failed (including a missing client certificate when one is required) or
    /// took longer than `deadline`.
    pub async fn accept<S>(
        &self,
        stream: S,
        deadline: Duration,
    ) -> std::io::Result<(tokio_rustls::server::TlsStream<S>, Option<String>)>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = TlsAcceptor::from(self.server_config());
        let stream = tokio::time::timeout(deadline, acceptor.accept(stream))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")
            })??;
        let cert_cn = stream
            .get_ref()
            .1
            .peer_certificates()
            .and_then(<[_]>::first)
            .and_then(common_name);
        Ok((stream, cert_cn))
    }
}

/// Request extension the HTTP listener adds to every request that came over TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsClient {
    /// Common name of the verified client certificate, if one was presented.
    pub cert_cn: Option<String>,
}

/// The subject common name of a DER certificate.
#[must_use]
pub fn common_name(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let cn = parsed.subject().iter_common_name().next()?;
    cn.as_str().ok().map(str::to_owned)
}

/// Builds the rustls server configuration (ring provider, TLS 1.2 and 1.3).
fn server_config(config: &TlsConfig) -> anyhow::Result<ServerConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(&config.cert)?;
    if certs.is_empty() {
        anyhow::bail!("no certificate in {}", config.cert.display());
    }
    let key = read_key(&config.key)?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &config.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .with_context(|| format!("invalid CA certificate in {}", ca.display()))?;
            }
            if roots.is_empty() {
                anyhow::bail!("no certificate in client_ca {}", ca.display());
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider));
            let verifier = if config.client_cert_required {
                verifier
            } else {
                verifier.allow_unauthenticated()
            };
            builder
                .with_client_cert_verifier(verifier.build().context("client certificate verifier")?)
        }
        None if config.client_cert_required => {
            anyhow::bail!("[tls] client_cert_required needs client_ca")
        }
        None => builder.with_no_client_auth(),
    };
    builder.with_single_cert(certs, key).with_context(|| {
        format!(
            "the key {} does not match the certificate {}",
            config.key.display(),
            config.cert.display()
        )
    })
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("invalid PEM in {}", path.display()))
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .with_context(|| format!("invalid PEM in {}", path.display()))?
        .with_context(|| format!("no private key in {}", path.display()))
}

/// Accepts MQTT over TLS connections on `listener` until `shutdown`: one task per connection
/// (on `tracker`, holding a broker connection permit), which completes the TLS handshake within
/// the broker's `connect_timeout` and then serves MQTT as [`Transport::Tls`].
pub async fn serve_mqtts(
    listener: TcpListener,
    tls: Arc<Tls>,
    broker: Broker,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let deadline = Duration::from_secs(broker.config().connect_timeout.max(1));
    crate::listen::accept_until(&listener, "mqtts", &shutdown, |stream, peer| {
        let Some(permit) = broker.try_acquire_connection() else {
            tracing::warn!(%peer, "connection limit reached, closing new TLS connection");
            return;
        };
        let broker = broker.clone();
        let tls = Arc::clone(&tls);
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let handshake = tokio::select! {
                () = shutdown.cancelled() => return,
                r = tls.accept(stream, deadline) => r,
            };
            match handshake {
                Ok((stream, cert_cn)) => {
                    let meta = ConnectionMeta {
                        cert_cn,
                        ..ConnectionMeta::default()
                    };
                    broker
                        .serve_connection_with(stream, peer, Transport::Tls, meta, shutdown)
                        .await;
                }
                Err(err) => tracing::debug!(%peer, "TLS handshake failed: {err}"),
            }
            drop(permit);
        });
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_reloads_and_refuses_bad_configurations() {
        let dir = tempfile::tempdir().unwrap();
        let generated = crate::cert::generate(dir.path(), &[], &[], false).unwrap();
        let config = TlsConfig {
            cert: generated.server.clone(),
            key: generated.server_key.clone(),
            client_ca: Some(generated.ca.clone()),
            client_cert_required: false,
        };
        let tls = Tls::load(&config).unwrap();
        let before = tls.server_config();
        tls.reload().unwrap();
        assert!(!Arc::ptr_eq(&before, &tls.server_config()));

        let mismatched = TlsConfig {
            key: generated.ca_key.clone(),
            ..config.clone()
        };
        assert!(Tls::load(&mismatched).is_err());
        let required = TlsConfig {
            client_ca: None,
            client_cert_required: true,
            ..config.clone()
        };
        assert!(Tls::load(&required).is_err());

        std::fs::write(&config.cert, "garbage").unwrap();
        let current = tls.server_config();
        assert!(tls.reload().is_err());
        assert!(
            Arc::ptr_eq(&current, &tls.server_config()),
            "kept on failure"
        );
    }

    #[test]
    fn tls_and_scram_tables_are_read() {
        let config = crate::config::Config::from_toml(
            "[listeners]\nmqtts = [\"127.0.0.1:8884\"]\n\
             [tls]\ncert = \"s.pem\"\nkey = \"k.pem\"\nclient_ca = \"ca.pem\"\n\
             [scram]\nfile = \"scram.txt\"\n",
        )
        .unwrap();
        let tls = config.tls.unwrap();
        assert_eq!(tls.cert, PathBuf::from("s.pem"));
        assert_eq!(tls.client_ca, Some(PathBuf::from("ca.pem")));
        assert!(!tls.client_cert_required);
        assert_eq!(config.listeners.mqtts.unwrap()[0].port(), 8884);
        assert_eq!(config.scram.file, Some(PathBuf::from("scram.txt")));
        let config = crate::config::Config::from_toml("").unwrap();
        assert!(config.tls.is_none() && config.listeners.mqtts.is_none());
        assert!(crate::config::Config::from_toml("[tls]\ncert = \"a\"\n").is_err());
        assert!(
            crate::config::Config::from_toml("[tls]\ncert = \"a\"\nkey = \"b\"\nciphers = 1\n")
                .is_err()
        );
    }

    #[test]
    fn common_name_of_a_generated_certificate() {
        let dir = tempfile::tempdir().unwrap();
        crate::cert::generate(dir.path(), &[], &[], false).unwrap();
        let (cert, _) = crate::cert::issue_client(dir.path(), "plug-7").unwrap();
        let certs = read_certs(&cert).unwrap();
        assert_eq!(common_name(&certs[0]).as_deref(), Some("plug-7"));
    }
}
