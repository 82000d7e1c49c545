//! Which certificate authorities the network families trust: Mozilla's roots, the system's
//! store, and a CA bundle given for the target. Verification is never switched off.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

use crate::engine::binding::Failure;

/// The crypto provider: the one installed at start-up, else ring (never aws-lc).
pub fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Mozilla's roots plus the system's, read once: the system store is where operators put a
/// company CA, and Mozilla's keep a bare container working.
fn public_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        let native = rustls_native_certs::load_native_certs();
        let (added, ignored) = store.add_parsable_certificates(native.certs);
        tracing::debug!(added, ignored, "system root certificates");
        store
    })
}

/// The roots for a target: the public ones plus the certificates of `ca`, if given.
pub fn roots(ca: Option<&Path>) -> Result<Arc<RootCertStore>, Failure> {
    let mut store = public_roots().clone();
    if let Some(path) = ca {
        for cert in read_bundle(path)? {
            store.add(cert).map_err(|err| {
                Failure::from_error(
                    format!("CA bundle {} holds an unusable certificate", path.display()),
                    &err,
                )
            })?;
        }
    }
    Ok(Arc::new(store))
}

/// Every certificate in a PEM file; a file with none is an error, not an empty trust.
pub fn read_bundle(path: &Path) -> Result<Vec<CertificateDer<'static>>, Failure> {
    let bytes = std::fs::read(path).map_err(|err| {
        Failure::from_error(format!("cannot read CA bundle {}", path.display()), &err)
    })?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| {
            Failure::from_error(
                format!("CA bundle {} is not valid PEM", path.display()),
                &err,
            )
        })?;
    if certs.is_empty() {
        return Err(Failure::new(format!(
            "CA bundle {} holds no certificate (expected -----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

/// The standard WebPKI verifier for these roots.
pub fn verifier(roots: Arc<RootCertStore>) -> Result<Arc<WebPkiServerVerifier>, Failure> {
    WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|err| Failure::from_error("cannot build the certificate verifier", &err))
}

/// A client configuration that verifies servers against `ca` plus the public roots and offers
/// the given ALPN protocols.
pub fn client_config(ca: Option<&Path>, alpn: &[&[u8]]) -> Result<ClientConfig, Failure> {
    let roots = roots(ca)?;
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| Failure::from_error("cannot configure TLS", &err))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}
