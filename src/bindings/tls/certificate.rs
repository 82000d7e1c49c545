//! What a certificate says (subject, issuer, names, validity), read with x509-parser, and why
//! a verifier rejected one, in words an operator can act on.

use rhai::{Array, Dynamic, Map};
use rustls::CertificateError;
use sha2::{Digest, Sha256};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The fields of one certificate that a check looks at.
#[derive(Debug, Clone, PartialEq)]
pub struct CertificateInfo {
    pub subject: String,
    pub issuer: String,
    pub names: Vec<String>,
    pub not_before: i64,
    pub not_after: i64,
    pub serial: String,
    pub is_ca: bool,
    pub fingerprint: String,
}

impl CertificateInfo {
    /// Parses a DER certificate.
    pub fn parse(der: &[u8]) -> Result<Self, String> {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|err| format!("not a readable X.509 certificate: {err}"))?;
        Ok(Self {
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            names: names(&cert),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            serial: cert.raw_serial_as_string(),
            is_ca: cert.is_ca(),
            fingerprint: hex::encode(Sha256::digest(der)),
        })
    }

    /// Whole days until `not_after`, negative once it has passed.
    pub fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86_400)
    }

    pub fn self_signed(&self) -> bool {
        self.subject == self.issuer
    }

    /// The certificate as a script map.
    pub fn to_map(&self, now: i64) -> Map {
        let mut map = Map::new();
        map.insert("subject".into(), self.subject.clone().into());
        map.insert("issuer".into(), self.issuer.clone().into());
        let names: Array = self.names.iter().map(|n| n.clone().into()).collect();
        map.insert("sans".into(), names.into());
        map.insert("not_before".into(), rfc3339(self.not_before).into());
        map.insert("not_after".into(), rfc3339(self.not_after).into());
        map.insert("days_left".into(), self.days_left(now).into());
        map.insert("expired".into(), (self.not_after < now).into());
        map.insert("serial".into(), self.serial.clone().into());
        map.insert("ca".into(), self.is_ca.into());
        map.insert("self_signed".into(), self.self_signed().into());
        map.insert("sha256".into(), self.fingerprint.clone().into());
        map
    }
}

/// DNS names and IP addresses from the subjectAltName extension.
fn names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some((*dns).to_owned()),
            GeneralName::IPAddress(bytes) => ip_text(bytes),
            _ => None,
        })
        .collect()
}

fn ip_text(bytes: &[u8]) -> Option<String> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv4Addr::from(b).to_string()),
        16 => <[u8; 16]>::try_from(bytes)
            .ok()
            .map(|b| std::net::Ipv6Addr::from(b).to_string()),
        _ => None,
    }
}

/// A UNIX time as RFC 3339 (UTC, seconds).
pub fn rfc3339(timestamp: i64) -> String {
    chrono::DateTime::from_timestamp(timestamp, 0).map_or_else(
        || timestamp.to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Why a certificate was rejected. `chain` is what the server presented, leaf first, when
/// known; it lets the reason tell a self-signed certificate from a missing intermediate.
pub fn rejection(error: &rustls::Error, chain: &[CertificateInfo]) -> String {
    match error {
        rustls::Error::InvalidCertificate(error) => certificate_problem(error, chain),
        other => other.to_string(),
    }
}

fn certificate_problem(error: &CertificateError, chain: &[CertificateInfo]) -> String {
    let leaf = chain.first();
    match error {
        CertificateError::ExpiredContext { not_after, .. } => {
            format!("certificate expired on {}", rfc3339(unix(not_after)))
        }
        CertificateError::Expired => match leaf {
            Some(leaf) if leaf.not_after < now() => {
                format!("certificate expired on {}", rfc3339(leaf.not_after))
            }
            _ => "a certificate in the chain has expired".to_owned(),
        },
        CertificateError::NotValidYetContext { not_before, .. } => format!(
            "certificate is not valid before {}",
            rfc3339(unix(not_before))
        ),
        CertificateError::NotValidYet => "certificate is not valid yet".to_owned(),
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let names = match leaf {
                Some(leaf) => leaf.names.clone(),
                None => presented.iter().map(|n| unquoted(n)).collect(),
            };
            format!(
                "certificate is not valid for {} (it names {})",
                expected.to_str(),
                if names.is_empty() {
                    "no host".to_owned()
                } else {
                    names.join(", ")
                }
            )
        }
        CertificateError::NotValidForName => "certificate is not valid for this host".to_owned(),
        CertificateError::UnknownIssuer => unknown_issuer(chain),
        // A self-signed certificate whose name matches a trusted one (many systems trust a
        // `CN=localhost` of their own) fails on the signature rather than the issuer.
        CertificateError::BadSignature
        | CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. }
            if matches!(chain, [leaf] if leaf.self_signed()) =>
        {
            unknown_issuer(chain)
        }
        CertificateError::BadSignature => {
            "certificate signature does not match its issuer's key".to_owned()
        }
        CertificateError::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => {
            "certificate signature does not fit the key of the trusted certificate of that name \
             (self-signed, or from another CA with the same name)"
                .to_owned()
        }
        CertificateError::Revoked => "certificate has been revoked".to_owned(),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            "certificate is not meant for TLS servers".to_owned()
        }
        other => format!(
            "certificate rejected: {}",
            rustls::Error::InvalidCertificate(other.clone())
        ),
    }
}

/// `DnsName("a.example")` as `a.example`: rustls names presented hosts by their Debug form.
fn unquoted(name: &str) -> String {
    match (name.find('"'), name.rfind('"')) {
        (Some(start), Some(end)) if end > start => name[start + 1..end].to_owned(),
        _ => name.to_owned(),
    }
}

fn unix(time: &rustls::pki_types::UnixTime) -> i64 {
    i64::try_from(time.as_secs()).unwrap_or(i64::MAX)
}

fn unknown_issuer(chain: &[CertificateInfo]) -> String {
    match chain {
        [leaf] if leaf.self_signed() => {
            "self-signed certificate, not issued by a trusted authority".to_owned()
        }
        [leaf] => format!(
            "issuer `{}` is not trusted: the server sent no intermediate certificate, or the CA \
             is internal (give it with the `ca` option)",
            leaf.issuer
        ),
        [.., last] => format!(
            "chain ends at `{}`, which is not a trusted root: an intermediate is missing, or the \
             CA is internal (give it with the `ca` option)",
            last.issuer
        ),
        [] => "issued by an authority that is not trusted (self-signed, an internal CA not given \
               with the `ca` option, or a missing intermediate)"
            .to_owned(),
    }
}

/// Every certificate in PEM text, parsed.
pub fn from_pem(text: &str) -> Result<Vec<CertificateInfo>, String> {
    let mut certs = Vec::new();
    for (index, pem) in x509_parser::pem::Pem::iter_from_buffer(text.as_bytes()).enumerate() {
        let pem = pem.map_err(|err| format!("PEM block {} is unreadable: {err}", index + 1))?;
        if pem.label != "CERTIFICATE" {
            continue;
        }
        let info = CertificateInfo::parse(&pem.contents)
            .map_err(|err| format!("certificate {}: {err}", index + 1))?;
        certs.push(info);
    }
    if certs.is_empty() {
        return Err("no certificate found (expected -----BEGIN CERTIFICATE-----)".to_owned());
    }
    Ok(certs)
}

/// Certificates as a script array.
pub fn to_array(certs: &[CertificateInfo]) -> Array {
    let now = now();
    certs.iter().map(|c| Dynamic::from(c.to_map(now))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(subject: &str, issuer: &str) -> CertificateInfo {
        CertificateInfo {
            subject: subject.into(),
            issuer: issuer.into(),
            names: vec![],
            not_before: 0,
            not_after: 0,
            serial: String::new(),
            is_ca: false,
            fingerprint: String::new(),
        }
    }

    #[test]
    fn an_unknown_issuer_is_explained_by_the_chain() {
        let unknown = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
        let alone = rejection(&unknown, &[info("CN=a", "CN=a")]);
        assert!(alone.starts_with("self-signed"), "{alone}");
        let missing = rejection(&unknown, &[info("CN=a", "CN=Intermediate")]);
        assert!(missing.contains("no intermediate"), "{missing}");
    }

    #[test]
    fn days_left_rounds_down_and_goes_negative() {
        let mut cert = info("CN=a", "CN=b");
        cert.not_after = 10 * 86_400 + 5;
        assert_eq!(cert.days_left(0), 10);
        assert_eq!(cert.days_left(11 * 86_400), -1);
    }
}
