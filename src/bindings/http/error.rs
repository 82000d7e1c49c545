//! What went wrong with a request, said about the host it went to: refused, not resolvable,
//! too slow, certificate rejected and why.

use std::error::Error as StdError;
use std::time::Duration;

use crate::bindings::tls::certificate;
use crate::engine::binding::Failure;

/// The ways a network call fails that an operator tells apart.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("connection refused by {address}")]
    Refused { address: String },
    #[error("cannot resolve {host} (DNS lookup failed)")]
    Dns { host: String },
    #[error("could not connect to {address} within {secs} s")]
    ConnectTimedOut { address: String, secs: f64 },
    #[error("timed out after {secs} s waiting for {address}")]
    TimedOut { address: String, secs: f64 },
    #[error("certificate of {address} rejected: {reason}")]
    Certificate { address: String, reason: String },
    #[error("TLS handshake with {address} failed: {reason}")]
    Tls { address: String, reason: String },
    #[error("{address} closed the connection before a complete response")]
    Closed { address: String },
}

/// The errors below `error`, each once, innermost last. `io::Error` hides the error it wraps
/// from `source()`, so that one is looked into as well.
fn chain<'a>(error: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut all = Vec::new();
    let mut current = Some(error);
    while let Some(err) = current {
        all.push(err);
        current = match err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner),
            None => err.source(),
        };
    }
    all
}

/// Names a failure to reach `address` from the error chain of any client library.
pub fn classify(address: &str, error: &(dyn StdError + 'static)) -> Option<NetError> {
    let address = address.to_owned();
    for err in chain(error) {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(match tls {
                rustls::Error::InvalidCertificate(_) => NetError::Certificate {
                    reason: certificate::rejection(tls, &[]),
                    address,
                },
                other => NetError::Tls {
                    reason: other.to_string(),
                    address,
                },
            });
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    return Some(NetError::Refused { address });
                }
                std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::UnexpectedEof => return Some(NetError::Closed { address }),
                _ => {}
            }
        }
        let text = err.to_string();
        if text.starts_with("dns error") || text.contains("failed to lookup address") {
            return Some(NetError::Dns {
                host: host_of(&address),
            });
        }
        if text.contains("connection closed before message completed") {
            return Some(NetError::Closed { address });
        }
    }
    None
}

fn host_of(address: &str) -> String {
    match address.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host.to_owned(),
        _ => address.to_owned(),
    }
}

/// A request error from reqwest as a failure naming the host.
pub fn request_failure(
    address: &str,
    connect_timeout: Duration,
    error: &reqwest::Error,
) -> Failure {
    if error.is_connect() && error.is_timeout() {
        return NetError::ConnectTimedOut {
            address: address.to_owned(),
            secs: connect_timeout.as_secs_f64(),
        }
        .into();
    }
    if let Some(known) = classify(address, error) {
        return known.into();
    }
    let what = if error.is_connect() {
        format!("cannot connect to {address}")
    } else if error.is_body() || error.is_decode() {
        format!("reading the response from {address} failed")
    } else {
        format!("request to {address} failed")
    };
    // reqwest's own text repeats the URL, which the message already names.
    let mut failure = Failure::new(what);
    for cause in chain(error).iter().skip(1) {
        let text = cause.to_string();
        if !failure.causes.contains(&text) {
            failure.causes.push(text);
        }
    }
    failure
}

/// A failed TCP connect as a failure naming the address.
pub fn connect_failure(address: &str, error: &std::io::Error) -> Failure {
    match classify(address, error) {
        Some(known) => known.into(),
        None => Failure::from_error(format!("cannot connect to {address}"), error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_and_wrapped_tls_errors_are_named() {
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let known = classify("db:5432", &refused).map(|e| e.to_string());
        assert_eq!(known.as_deref(), Some("connection refused by db:5432"));

        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
        let wrapped = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let known = classify("api:443", &wrapped).map(|e| e.to_string());
        assert!(
            known
                .as_deref()
                .is_some_and(|t| t.starts_with("certificate of api:443 rejected")),
            "{known:?}"
        );
    }
}
