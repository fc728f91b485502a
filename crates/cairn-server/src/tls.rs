//! HTTPS served by `cairn serve` itself, so that one machine on a LAN is safe without a
//! proxy in front: rustls (through tokio-rustls, with the ring provider the clients'
//! reqwest already uses) over the certificate and key the configuration names.

use std::sync::Arc;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// Reads the certificate chain and key, and checks that they belong together; the
/// error names the file to fix.
pub(crate) fn acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| {
            format!(
                "cannot read the TLS certificate {} (a PEM file is expected)",
                files.cert.display()
            )
        })?;
    if chain.is_empty() {
        anyhow::bail!(
            "the TLS certificate file {} holds no certificate",
            files.cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(&files.key).with_context(|| {
        format!(
            "cannot read the TLS private key {} (a PEM file with one key is expected)",
            files.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("rustls has no protocol version to offer")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "the TLS key {} does not fit the certificate {}",
                files.key.display(),
                files.cert.display()
            )
        })?;
    // The server speaks HTTP/1.1 (see `serve.rs`).
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
