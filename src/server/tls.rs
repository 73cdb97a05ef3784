//! Optional TLS termination with rustls, for deployments without a TLS-terminating load
//! balancer. ALPN offers HTTP/2 and HTTP/1.1; the handshake must finish within the header
//! read timeout, so a silent client cannot hold a connection slot.

use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use crate::config::ConfigError;

/// Builds the acceptor from PEM files (certificate chain first, then the private key).
///
/// # Errors
/// Unreadable or invalid files, named by their config key.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ConfigError> {
    let certs = {
        let f = std::fs::File::open(cert).map_err(|e| {
            ConfigError::invalid("server.tls.cert", format!("{}: {e}", cert.display()))
        })?;
        rustls_pemfile::certs(&mut BufReader::new(f))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                ConfigError::invalid("server.tls.cert", format!("not PEM certificates: {e}"))
            })?
    };
    if certs.is_empty() {
        return Err(ConfigError::invalid(
            "server.tls.cert",
            "no certificate in the file",
        ));
    }
    let key = {
        let f = std::fs::File::open(key).map_err(|e| {
            ConfigError::invalid("server.tls.key", format!("{}: {e}", key.display()))
        })?;
        rustls_pemfile::private_key(&mut BufReader::new(f))
            .map_err(|e| ConfigError::invalid("server.tls.key", format!("not a PEM key: {e}")))?
            .ok_or_else(|| ConfigError::invalid("server.tls.key", "no private key in the file"))?
    };
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::invalid("server.tls", e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            ConfigError::invalid(
                "server.tls.key",
                format!("does not match the certificate: {e}"),
            )
        })?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(cfg)))
}
