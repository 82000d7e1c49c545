//! Email alerts over SMTP with lettre: TLS (STARTTLS or implicit) is required except to a
//! relay on this machine, and the password is a secret reference.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Mailboxes};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;

use crate::bindings::secure_http::is_loopback_host;
use crate::engine::binding::Failure;
use crate::secret::Secret;

/// `[alert.email]` (or any `[alert.NAME]` with `type = "email"`).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSettings {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub from: Option<String>,
    /// Default recipients for routes.
    #[serde(default)]
    pub to: Vec<String>,
    pub username: Option<String>,
    /// A secret reference, e.g. `env:SMTP_PASSWORD`.
    pub password: Option<String>,
    /// `starttls` (the default), `tls` (implicit TLS, usually port 465) or `none` (only to a
    /// relay on this machine).
    pub tls: Option<String>,
    /// Extra CA certificates (PEM) for a relay with a private CA.
    pub ca_cert: Option<PathBuf>,
}

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protection {
    StartTls,
    Implicit,
    /// Loopback only: STARTTLS if the relay offers it, plain text otherwise.
    Opportunistic,
    None,
}

/// A message ready for the relay.
pub struct Email {
    host: String,
    port: u16,
    protection: Protection,
    ca_cert: Option<Vec<u8>>,
    credentials: Option<(String, Secret)>,
    message: Message,
}

/// What the message says.
pub struct Letter<'a> {
    pub to: &'a [String],
    pub subject: &'a str,
    pub body: &'a str,
    pub dedup_key: &'a str,
}

impl Email {
    /// Checks the settings and builds the message; `password` is the resolved secret.
    pub fn new(
        settings: &EmailSettings,
        password: Option<Secret>,
        letter: &Letter<'_>,
    ) -> Result<Self, Failure> {
        let host = settings
            .host
            .clone()
            .ok_or_else(|| Failure::new("no SMTP server: set `host`"))?;
        let protection = protection(settings.tls.as_deref(), &host)?;
        let port = settings.port.unwrap_or(match protection {
            Protection::Implicit => 465,
            Protection::StartTls => 587,
            Protection::Opportunistic | Protection::None => 25,
        });
        let credentials = match (&settings.username, password) {
            (Some(user), Some(password)) => Some((user.clone(), password)),
            (None, None) => None,
            _ => {
                return Err(Failure::new(
                    "`username` and `password` go together: set both or neither",
                ));
            }
        };
        let ca_cert = match &settings.ca_cert {
            Some(path) => Some(std::fs::read(path).map_err(|err| {
                Failure::from_error(format!("cannot read {}", path.display()), &err)
            })?),
            None => None,
        };
        Ok(Self {
            message: message(settings, letter)?,
            host,
            port,
            protection,
            ca_cert,
            credentials,
        })
    }

    /// Sends it once; the flag says whether the failure is worth another try.
    pub async fn send(&self, timeout: Duration) -> Result<(), (Failure, bool)> {
        let transport = self.transport(timeout).map_err(|f| (f, false))?;
        match transport.send(self.message.clone()).await {
            Ok(_) => Ok(()),
            Err(err) => {
                // A refused message (5xx) or a TLS failure will fail the same way again;
                // a busy relay (4xx), a dropped connection or a timeout may not.
                let transient =
                    !err.is_permanent() && !err.is_tls() && !is_certificate_problem(&err);
                let failure = Failure::from_error(
                    format!("the SMTP server {} did not take the message", self.host),
                    &err,
                );
                Err((failure, transient))
            }
        }
    }

    fn transport(&self, timeout: Duration) -> Result<AsyncSmtpTransport<Tokio1Executor>, Failure> {
        let tls_failed = |err: lettre::transport::smtp::Error| {
            Failure::from_error("cannot set up TLS for SMTP", &err)
        };
        let mut parameters = TlsParameters::builder(self.host.clone());
        if let Some(pem) = &self.ca_cert {
            parameters =
                parameters.add_root_certificate(Certificate::from_pem(pem).map_err(tls_failed)?);
        }
        let tls = match self.protection {
            Protection::None => Tls::None,
            Protection::StartTls => Tls::Required(parameters.build().map_err(tls_failed)?),
            Protection::Implicit => Tls::Wrapper(parameters.build().map_err(tls_failed)?),
            Protection::Opportunistic => {
                Tls::Opportunistic(parameters.build().map_err(tls_failed)?)
            }
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&self.host)
            .port(self.port)
            .tls(tls)
            .timeout(Some(timeout));
        if let Some((user, password)) = &self.credentials {
            builder =
                builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        Ok(builder.build())
    }
}

/// Whether a TLS handshake failed (an untrusted or mismatched certificate, say): lettre
/// reports those as connection errors, but trying again cannot change the outcome.
fn is_certificate_problem(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        // An io::Error's source skips the error it wraps, so look inside it as well.
        let wrapped = error
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref);
        if error.is::<rustls::Error>() || wrapped.is_some_and(|inner| inner.is::<rustls::Error>()) {
            return true;
        }
        current = error.source();
    }
    false
}

/// The protection the settings ask for; plain text is allowed only on loopback.
fn protection(tls: Option<&str>, host: &str) -> Result<Protection, Failure> {
    let loopback = is_loopback_host(host);
    match tls {
        None if loopback => Ok(Protection::Opportunistic),
        None | Some("starttls") => Ok(Protection::StartTls),
        Some("tls") => Ok(Protection::Implicit),
        Some("none") if loopback => Ok(Protection::None),
        Some("none") => Err(Failure::new(format!(
            "`tls = \"none\"` is allowed only for a relay on this machine, not {host}: passwords and alerts would cross the network in clear"
        ))),
        Some(other) => Err(Failure::new(format!(
            "unknown `tls = \"{other}\"` (starttls, tls or none)"
        ))),
    }
}

fn message(settings: &EmailSettings, letter: &Letter<'_>) -> Result<Message, Failure> {
    let from: Mailbox = settings
        .from
        .as_deref()
        .ok_or_else(|| Failure::new("no sender: set `from`"))?
        .parse()
        .map_err(|err| Failure::from_error("`from` is not an email address", &err))?;
    if letter.to.is_empty() {
        return Err(Failure::new("no recipients: give `to`"));
    }
    let mut to = Mailboxes::new();
    for address in letter.to {
        let mailbox: Mailbox = address.parse().map_err(|err| {
            Failure::from_error(format!("`{address}` is not an email address"), &err)
        })?;
        to.push(mailbox);
    }
    // The Message-ID is fixed once, so a retried send is recognisably the same message; its
    // random part keeps two alerts with the same dedup key from being merged by mail clients.
    let mut nonce = [0_u8; 6];
    getrandom::fill(&mut nonce)
        .map_err(|err| Failure::new(format!("no random numbers from the system ({err})")))?;
    let domain = from.email.domain().to_owned();
    let mut builder = Message::builder()
        .from(from)
        .subject(letter.subject)
        .message_id(Some(format!(
            "<{}.{}@{domain}>",
            letter.dedup_key,
            hex::encode(nonce)
        )))
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("X-Runbook-Dedup-Key"),
            letter.dedup_key.to_owned(),
        ))
        .header(ContentType::TEXT_PLAIN);
    for mailbox in to {
        builder = builder.to(mailbox);
    }
    builder
        .body(letter.body.to_owned())
        .map_err(|err| Failure::from_error("cannot build the message", &err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_text_only_on_loopback() {
        assert_eq!(
            protection(None, "127.0.0.1").unwrap(),
            Protection::Opportunistic
        );
        assert_eq!(
            protection(None, "smtp.example.com").unwrap(),
            Protection::StartTls
        );
        assert_eq!(protection(Some("none"), "::1").unwrap(), Protection::None);
        let err = protection(Some("none"), "smtp.example.com")
            .unwrap_err()
            .message;
        assert!(err.contains("only for a relay on this machine"), "{err}");
        assert!(protection(Some("ssl"), "x").is_err());
    }
}
