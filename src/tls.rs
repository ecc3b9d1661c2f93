//! rustls client configuration shared by the IMAP connection.
//!
//! Trust = the Mozilla roots (webpki-roots) plus, when the operator names
//! one, the certificates in `ca_file` (a private CA, or the loopback test
//! CA). There is no "accept any certificate" switch on purpose.

use rustls::pki_types::ServerName;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key} {path}: {reason}")]
    CaFile {
        key: &'static str,
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("{key} = {host:?} is not a valid TLS server name")]
    ServerName { key: &'static str, host: String },
}

/// A client config trusting the public roots plus `ca_file`.
pub fn client_config(
    ca_file: Option<&Path>,
    key: &'static str,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let err = |reason: String| TlsError::CaFile {
            key,
            path: path.to_owned(),
            reason,
        };
        let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let mut n = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            let cert = cert.map_err(|e| err(format!("not a PEM certificate file: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| err(format!("unusable certificate: {e}")))?;
            n += 1;
        }
        if n == 0 {
            return Err(err("contains no PEM certificate".into()));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::CaFile {
            key,
            path: ca_file.map(Path::to_owned).unwrap_or_default(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The name to verify the server's certificate against.
pub fn server_name(host: &str, key: &'static str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_owned()).map_err(|_| TlsError::ServerName {
        key,
        host: host.to_owned(),
    })
}
