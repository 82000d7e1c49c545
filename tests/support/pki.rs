//! Certificates made for the tests with rcgen: a root, an intermediate, and server
//! certificates that are valid, about to expire, expired, for another host or self-signed.

use chrono::{Datelike, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A server's certificate chain (leaf first) and key.
pub struct Served {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

/// Which certificate a TLS test server presents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// For localhost, web.test and 127.0.0.1, with its intermediate; 90 days left.
    Valid,
    /// Like `Valid`, but 10 days left.
    Expiring,
    /// Expired yesterday.
    Expired,
    /// For other.test only.
    WrongHost,
    /// Signed by itself.
    SelfSigned,
    /// Valid, but sent without its intermediate.
    MissingIntermediate,
}

pub const HOSTS: &[&str] = &["localhost", "web.test", "127.0.0.1"];

/// The test CA: a root (which the tests trust) and an intermediate (which servers send).
pub struct Pki {
    pub root_pem: String,
    intermediate: CertifiedIssuer<'static, KeyPair>,
}

/// A calendar day `offset` days from today, as rcgen's `date_time_ymd` takes it.
fn day(offset: i64) -> (i32, u8, u8) {
    let date = Utc::now() + Duration::days(offset);
    (date.year(), date.month() as u8, date.day() as u8)
}

fn params(names: &[&str], common_name: &str, from: i64, until: i64) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("valid names");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    let ((y, m, d), (y2, m2, d2)) = (day(from), day(until));
    params.not_before = rcgen::date_time_ymd(y, m, d);
    params.not_after = rcgen::date_time_ymd(y2, m2, d2);
    params
}

fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = params(&[], common_name, -30, 3650);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

impl Pki {
    pub fn new() -> Self {
        let root_key = KeyPair::generate().expect("root key");
        let root = CertifiedIssuer::self_signed(ca_params("Runbook Test Root"), root_key)
            .expect("root certificate");
        let intermediate = CertifiedIssuer::signed_by(
            ca_params("Runbook Test Intermediate"),
            KeyPair::generate().expect("intermediate key"),
            &root,
        )
        .expect("intermediate certificate");
        Self {
            root_pem: root.pem(),
            intermediate,
        }
    }

    /// The chain and key a server of this kind presents.
    pub fn served(&self, kind: Kind) -> Served {
        let key = KeyPair::generate().expect("server key");
        let (names, from, until): (&[&str], i64, i64) = match kind {
            Kind::Valid | Kind::MissingIntermediate | Kind::SelfSigned => (HOSTS, -1, 90),
            Kind::Expiring => (HOSTS, -80, 10),
            Kind::Expired => (HOSTS, -90, -1),
            Kind::WrongHost => (&["other.test"], -1, 90),
        };
        let mut leaf = params(names, names[0], from, until);
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = if kind == Kind::SelfSigned {
            leaf.self_signed(&key).expect("self-signed certificate")
        } else {
            let issuer: &Issuer<'_, KeyPair> = &self.intermediate;
            leaf.signed_by(&key, issuer).expect("server certificate")
        };
        let mut chain = vec![cert.der().clone()];
        if !matches!(kind, Kind::SelfSigned | Kind::MissingIntermediate) {
            chain.push(self.intermediate.der().clone());
        }
        Served {
            chain,
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        }
    }
}
