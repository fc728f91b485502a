//! Which servers the client believes: one rustls configuration for its HTTP requests
//! and its notification WebSocket alike, so the two can never disagree. It trusts the
//! Mozilla roots (webpki-roots, built in), the operating system's roots, and the
//! certificates of a file given at login (`cairn login … --ca FILE`): a private CA's,
//! or a LAN server's own self-signed one.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::ClientError;

/// The TLS configuration for a client that also trusts the CA certificates in the PEM
/// file `ca` (when given).
pub(crate) fn tls_config(ca: Option<&Path>) -> Result<Arc<ClientConfig>, ClientError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    // A system store that cannot be read leaves the built-in roots, which is what a
    // machine without one would have anyway.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    let mut named = Vec::new();
    if let Some(path) = ca {
        let unusable = |reason: String| ClientError::Io {
            path: path.to_owned(),
            error: std::io::Error::new(std::io::ErrorKind::InvalidData, reason),
        };
        named = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|err| unusable(format!("cannot read it as PEM certificates: {err}")))?;
        if named.is_empty() {
            return Err(unusable("it holds no certificate".into()));
        }
        roots.add_parsable_certificates(named.iter().cloned());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chains = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|err| ClientError::Protocol(err.to_string()))?;
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| ClientError::Protocol(err.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Verifier { chains, named }))
        .with_no_client_auth();
    // The server speaks HTTP/1.1, WebSocket upgrades included.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The usual chain check (rustls's WebPKI verifier), except that a certificate named in
/// the `--ca` file is also trusted as the server's own. A LAN server's self-signed
/// certificate is usually made by `openssl req -x509`, which marks it a CA, and the
/// chain check refuses a CA certificate presented as a server's. Either way the server
/// must prove it holds the certificate's key: the handshake's signatures are checked as
/// always.
#[derive(Debug)]
struct Verifier {
    chains: Arc<WebPkiServerVerifier>,
    named: Vec<CertificateDer<'static>>,
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .named
            .iter()
            .any(|cert| cert.as_ref() == end_entity.as_ref())
        {
            return Ok(ServerCertVerified::assertion());
        }
        self.chains
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chains.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.chains.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.chains.supported_verify_schemes()
    }
}
