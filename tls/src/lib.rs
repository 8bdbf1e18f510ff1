//! The TLS configurations Strait's components share, on rustls with the ring provider:
//! serving from PEM, and the one client that does not verify the server, for the two places
//! where trust comes from elsewhere.

use std::sync::Arc;

use rustls::{
    ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject as _},
};

/// What went wrong building a configuration.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the {what} is not PEM: {why}")]
    Pem { what: &'static str, why: String },
    #[error("the TLS configuration is refused: {0}")]
    Config(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration for a certificate chain and key in PEM, offering `alpn`.
pub fn server_config(
    cert_pem: &str,
    key_pem: &str,
    alpn: &[&[u8]],
) -> Result<ServerConfig, TlsError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: "serving certificate",
            why: e.to_string(),
        })?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| TlsError::Pem {
        what: "serving key",
        why: e.to_string(),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// A client configuration that accepts any server certificate (signatures are still checked
/// against the certificate presented). Only for connections whose trust comes from elsewhere:
/// a joining agent fetching a CA it then checks against its token's pin, and the API server
/// reaching agents, whose certificates kube-apiserver does not verify either without
/// `--kubelet-certificate-authority`.
pub fn unverified_client_config(alpn: &[&[u8]]) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let mut config = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Unverified(provider)))
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Accepts any certificate; see [`unverified_client_config`].
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_self_signed_pair_serves_and_garbage_is_named() {
        let cert = rcgen::generate_simple_self_signed(vec!["node".to_owned()]).unwrap();
        let config = server_config(
            &cert.cert.pem(),
            &cert.signing_key.serialize_pem(),
            &[b"http/1.1"],
        )
        .unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
        let err = server_config("nonsense", "nonsense", &[]).unwrap_err();
        assert!(err.to_string().contains("not PEM"), "{err}");
        let client = unverified_client_config(&[b"h2"]).unwrap();
        assert_eq!(client.alpn_protocols, [b"h2".to_vec()]);
    }
}
