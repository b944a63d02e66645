//! The rustls client configuration a deployment's TLS settings ask for, built once: the
//! CA file's roots (else the system's), an optional client certificate, and the two
//! relaxations redis-py users ask for by name (`ssl_cert_reqs=none`,
//! `ssl_check_hostname=false`).

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

use super::error::ClientError;
use super::settings::TlsSettings;

fn config_error(setting: &'static str, reason: impl ToString) -> ClientError {
    ClientError::TlsConfig {
        setting,
        reason: reason.to_string(),
    }
}

fn read_pem(setting: &'static str, path: &Path) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|err| config_error(setting, format!("cannot read {}: {err}", path.display())))
}

fn certificates(setting: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let pem = read_pem(setting, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| config_error(setting, format!("{}: {err}", path.display())))?;
    if certs.is_empty() {
        return Err(config_error(
            setting,
            format!("{} holds no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

fn roots(settings: &TlsSettings) -> Result<RootCertStore, ClientError> {
    let mut roots = RootCertStore::empty();
    match &settings.ca_file {
        Some(path) => {
            for cert in certificates("ssl_ca_certs", path)? {
                roots
                    .add(cert)
                    .map_err(|err| config_error("ssl_ca_certs", format!("{}: {err}", path.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(config_error(
                    "ssl_ca_certs",
                    "no CA file given and no system CA certificates found; set ssl_ca_certs",
                ));
            }
        }
    }
    Ok(roots)
}

/// The two relaxations users ask for by name: `ssl_check_hostname=false` checks the
/// certificate chain (`chain`) but not the name in it; `ssl_cert_reqs=none` (no `chain`)
/// accepts any certificate. The handshake's signatures are checked either way, so the
/// session is encrypted to whoever holds the certificate's key.
#[derive(Debug)]
struct Relaxed {
    chain: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Relaxed {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        match chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now) {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The client configuration `settings` describe; files are read here, once.
pub fn client_config(settings: &TlsSettings) -> Result<Arc<ClientConfig>, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| config_error("ssl", err))?;
    let builder = if settings.verify_certificate && settings.check_hostname {
        builder.with_root_certificates(roots(settings)?)
    } else {
        let chain = if settings.verify_certificate {
            let roots = Arc::new(roots(settings)?);
            let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|err| config_error("ssl_ca_certs", err))?;
            Some(verifier)
        } else {
            None
        };
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Relaxed { chain, provider }))
    };
    let config = match (&settings.client_cert_file, &settings.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = certificates("ssl_certfile", cert)?;
            let key = PrivateKeyDer::from_pem_slice(&read_pem("ssl_keyfile", key)?)
                .map_err(|err| config_error("ssl_keyfile", format!("{}: {err}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|err| config_error("ssl_certfile/ssl_keyfile", err))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(config_error(
                "ssl_certfile/ssl_keyfile",
                "a client certificate needs both the certificate and its key",
            ))
        }
    };
    Ok(Arc::new(config))
}
