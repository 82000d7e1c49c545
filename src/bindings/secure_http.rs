//! HTTP for requests that carry secrets (Vault tokens, signed AWS calls, webhook URLs and
//! routing keys): plain HTTP only to loopback, no redirect to another host, and errors that
//! never show the URL, whose path may itself be the secret.

use std::path::Path;
use std::time::Duration;

use reqwest::Url;
use reqwest::redirect::{Attempt, Policy};

use crate::engine::binding::Failure;

/// How long one request may take unless the family's settings say otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// Redirects followed within one origin before giving up.
const MAX_REDIRECTS: usize = 5;

/// Parses `text` as the URL of a secret-bearing endpoint; `what` names it in errors, which
/// never repeat the URL itself.
pub fn endpoint(text: &str, what: &str) -> Result<Url, Failure> {
    let url = Url::parse(text.trim())
        .map_err(|err| Failure::new(format!("{what} is not a valid URL ({err})")))?;
    check_scheme(&url, what)?;
    Ok(url)
}

/// Refuses plain HTTP to anything but this machine: a token sent in clear over a network
/// is a token given away.
pub fn check_scheme(url: &Url, what: &str) -> Result<(), Failure> {
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(url) => Ok(()),
        "http" => Err(Failure::new(format!(
            "{what} uses plain HTTP to {}: secrets are sent over HTTPS only (plain HTTP is \
             allowed to loopback addresses)",
            url.host_str().unwrap_or("?")
        ))),
        other => Err(Failure::new(format!(
            "{what} has scheme `{other}`: use https://"
        ))),
    }
}

/// Whether the URL's host is this machine (127.0.0.0/8, ::1 or `localhost`).
pub fn is_loopback(url: &Url) -> bool {
    url.host_str().is_some_and(is_loopback_host)
}

/// Whether a host name or address is this machine.
pub fn is_loopback_host(host: &str) -> bool {
    let trimmed = host.trim_start_matches('[').trim_end_matches(']');
    match trimmed.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => trimmed.eq_ignore_ascii_case("localhost"),
    }
}

/// A client for secret-bearing requests: redirects only within the same origin, rustls with
/// the system's roots plus `ca_cert` when given, and `timeout` per request.
pub fn client(ca_cert: Option<&Path>, timeout: Duration) -> Result<reqwest::Client, Failure> {
    let mut builder = reqwest::Client::builder()
        .redirect(Policy::custom(same_origin_only))
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("runbook/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path).map_err(|err| {
            Failure::from_error(
                format!("cannot read the CA certificate {}", path.display()),
                &err,
            )
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|err| {
            Failure::from_error(
                format!("{} holds no PEM certificate", path.display()),
                &err.without_url(),
            )
        })?;
        builder = builder.tls_certs_merge(certificates);
    }
    builder
        .build()
        .map_err(|err| Failure::from_error("cannot set up HTTPS", &err.without_url()))
}

/// Follows a redirect only to the same scheme, host and port: a secret-bearing request that
/// is sent elsewhere would hand its token or body to whoever answers there.
fn same_origin_only(attempt: Attempt) -> reqwest::redirect::Action {
    let Some(first) = attempt.previous().first() else {
        return attempt.stop();
    };
    let same = attempt.url().origin() == first.origin();
    if same && attempt.previous().len() <= MAX_REDIRECTS {
        return attempt.follow();
    }
    let message = if same {
        format!("more than {MAX_REDIRECTS} redirects")
    } else {
        format!(
            "refused a redirect to another host ({}): requests carrying secrets stay on the \
             host they were addressed to",
            attempt.url().host_str().unwrap_or("?")
        )
    };
    attempt.error(message)
}

/// A failed request as a failure that does not show the URL.
pub fn send_failed(what: &str, error: reqwest::Error) -> Failure {
    let timed_out = error.is_timeout();
    let error = error.without_url();
    if timed_out {
        return Failure::from_error(format!("{what}: no answer in time"), &error);
    }
    Failure::from_error(format!("{what}: request failed"), &error)
}

/// Whether an HTTP status is worth trying again: the server is overloaded, restarting or
/// asking us to slow down.
pub fn is_transient_status(status: reqwest::StatusCode) -> bool {
    status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS
}

/// Whether a request failure is worth trying again (no connection or no answer in time).
pub fn is_transient_error(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout()
}

/// A server's answer text cut to a length an error message can carry.
pub fn excerpt(body: &str) -> String {
    const LIMIT: usize = 300;
    let body = body.trim();
    match body.char_indices().nth(LIMIT) {
        Some((index, _)) => format!("{}...", &body[..index]),
        None => body.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(endpoint("http://127.0.0.1:8200", "Vault address").is_ok());
        assert!(endpoint("http://[::1]:8200", "Vault address").is_ok());
        assert!(endpoint("http://localhost:8200", "Vault address").is_ok());
        assert!(endpoint("https://vault.example.com", "Vault address").is_ok());
        let err = endpoint("http://vault.example.com/v1/x?token=abc", "Vault address")
            .unwrap_err()
            .message;
        assert!(err.contains("plain HTTP to vault.example.com"), "{err}");
        assert!(!err.contains("token=abc"), "{err}");
        assert!(endpoint("ftp://x", "Vault address").is_err());
    }

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback_host("127.0.0.1"));
        assert!(is_loopback_host("[::1]"));
        assert!(is_loopback_host("LOCALHOST"));
        assert!(!is_loopback_host("smtp.example.com"));
        assert!(!is_loopback_host("10.0.0.1"));
    }

    #[test]
    fn excerpts_are_bounded() {
        assert_eq!(excerpt("  short \n"), "short");
        let long = "é".repeat(400);
        assert_eq!(excerpt(&long).chars().count(), 303);
    }
}
