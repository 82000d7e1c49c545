//! A TLS handshake that reports instead of refusing: a verifier records the chain the server
//! presents and the standard WebPKI verdict on it, then lets the handshake finish so that an
//! expired or self-signed certificate can still be described.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rhai::Map;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::certificate::{self, CertificateInfo};
use super::trust;
use crate::engine::binding::Failure;

/// What the server presented and what the standard verifier said about it.
struct Seen {
    chain: Vec<CertificateDer<'static>>,
    verdict: Result<(), rustls::Error>,
}

#[derive(Debug)]
struct Recorder {
    inner: Arc<WebPkiServerVerifier>,
    seen: Mutex<Option<Seen>>,
}

impl std::fmt::Debug for Seen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Seen({} certificates)", self.chain.len())
    }
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map(|_| ());
        let chain = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.clone().into_owned())
            .collect();
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(Seen { chain, verdict });
        // Accepting here is what lets a rejected certificate be reported; the connection
        // carries no application data, and the handshake signatures are still checked below.
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Where to connect and what to ask for.
pub struct Probe {
    pub host: String,
    pub port: u16,
    pub server_name: String,
    pub timeout: Duration,
    pub ca: Option<PathBuf>,
}

/// Connects, shakes hands and reports, within the probe's timeout.
pub async fn inspect(probe: Probe) -> Result<Map, Failure> {
    let limit = probe.timeout;
    tokio::time::timeout(limit, handshake(&probe))
        .await
        .map_err(|_| {
            Failure::new(format!(
                "no TLS handshake within {} s (the server accepted nothing, or never answered)",
                limit.as_secs_f64()
            ))
        })?
}

async fn handshake(probe: &Probe) -> Result<Map, Failure> {
    let recorder = Arc::new(Recorder {
        inner: trust::verifier(trust::roots(probe.ca.as_deref())?)?,
        seen: Mutex::new(None),
    });
    let config = ClientConfig::builder_with_provider(trust::provider())
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .map_err(|err| Failure::from_error("cannot configure TLS", &err))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let name = ServerName::try_from(probe.server_name.clone()).map_err(|_| {
        Failure::new(format!(
            "`{}` is not a valid server name",
            probe.server_name
        ))
    })?;
    let address = format!("{}:{}", probe.host, probe.port);
    let tcp = TcpStream::connect(&address)
        .await
        .map_err(|err| super::super::http::error::connect_failure(&address, &err))?;
    let connected = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await;
    let seen = recorder
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    let mut stream = match (connected, &seen) {
        (Ok(stream), _) => stream,
        (Err(err), Some(seen)) => return Ok(report(probe, seen, None, Some(&err))),
        (Err(err), None) => {
            return Err(Failure::from_error(
                format!("TLS handshake with {address} failed"),
                &err,
            ));
        }
    };
    let Some(seen) = seen else {
        return Err(Failure::new(format!(
            "{address} finished the handshake without presenting a certificate"
        )));
    };
    let session = stream.get_ref().1;
    let negotiated = Negotiated {
        protocol: session.protocol_version().map(protocol_name),
        cipher: session
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite())),
        alpn: session
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned()),
    };
    let map = report(probe, &seen, Some(negotiated), None);
    let _ = tokio::io::AsyncWriteExt::shutdown(&mut stream).await;
    Ok(map)
}

struct Negotiated {
    protocol: Option<String>,
    cipher: Option<String>,
    alpn: Option<String>,
}

fn protocol_name(version: rustls::ProtocolVersion) -> String {
    match version {
        rustls::ProtocolVersion::TLSv1_2 => "TLS 1.2".to_owned(),
        rustls::ProtocolVersion::TLSv1_3 => "TLS 1.3".to_owned(),
        other => format!("{other:?}"),
    }
}

fn report(
    probe: &Probe,
    seen: &Seen,
    negotiated: Option<Negotiated>,
    failed: Option<&std::io::Error>,
) -> Map {
    let chain: Vec<CertificateInfo> = seen
        .chain
        .iter()
        .filter_map(|der| CertificateInfo::parse(der).ok())
        .collect();
    let reason = match (&seen.verdict, failed) {
        (Err(err), _) => certificate::rejection(err, &chain),
        (Ok(()), Some(err)) => format!("handshake failed after the certificate check: {err}"),
        (Ok(()), None) => String::new(),
    };
    let now = certificate::now();
    let mut map = Map::new();
    map.insert("host".into(), probe.host.clone().into());
    map.insert("port".into(), i64::from(probe.port).into());
    map.insert("server_name".into(), probe.server_name.clone().into());
    map.insert("verified".into(), reason.is_empty().into());
    map.insert("reason".into(), reason.into());
    let negotiated = negotiated.unwrap_or(Negotiated {
        protocol: None,
        cipher: None,
        alpn: None,
    });
    map.insert(
        "protocol".into(),
        negotiated.protocol.unwrap_or_default().into(),
    );
    map.insert(
        "cipher".into(),
        negotiated.cipher.unwrap_or_default().into(),
    );
    map.insert("alpn".into(), negotiated.alpn.unwrap_or_default().into());
    let days_left = chain.first().map_or(0, |leaf| leaf.days_left(now));
    map.insert("days_left".into(), days_left.into());
    map.insert("chain".into(), certificate::to_array(&chain).into());
    map
}
