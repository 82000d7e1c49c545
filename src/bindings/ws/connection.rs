//! Opening a WebSocket (TCP, TLS verified like every request, the upgrade) and the
//! connection object scripts send on and receive from.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::Url;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::bindings::http::error::{self as net, NetError};
use crate::bindings::options::Header;
use crate::bindings::tls::trust;
use crate::engine::binding::Failure;
use crate::transcript::event::Effect;

pub type Stream = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where and how to connect.
#[derive(Clone)]
pub struct WsSpec {
    pub url: Url,
    pub headers: Vec<Header>,
    pub timeout: Duration,
    pub ca: Option<PathBuf>,
    pub effect: Effect,
}

impl WsSpec {
    pub fn target(&self) -> String {
        crate::bindings::http::spec::shown_url(&self.url)
    }

    pub fn address(&self) -> String {
        let host = self.url.host_str().unwrap_or("?");
        let port = self
            .url
            .port()
            .unwrap_or(if self.url.scheme() == "wss" { 443 } else { 80 });
        format!("{host}:{port}")
    }

    /// The TLS setup for `wss:` URLs, built once and shared by every connection of a call.
    pub fn connector(&self) -> Result<Connector, Failure> {
        if self.url.scheme() == "wss" {
            let config = trust::client_config(self.ca.as_deref(), &[])?;
            Ok(Connector::Rustls(Arc::new(config)))
        } else {
            Ok(Connector::Plain)
        }
    }
}

/// Opens one connection within the spec's timeout; returns it and how long it took.
pub async fn open(spec: &WsSpec, connector: Connector) -> Result<(Stream, Duration), Failure> {
    let started = Instant::now();
    let address = spec.address();
    let stream = tokio::time::timeout(spec.timeout, handshake(spec, &address, connector))
        .await
        .map_err(|_| {
            Failure::from(NetError::TimedOut {
                address: address.clone(),
                secs: spec.timeout.as_secs_f64(),
            })
        })??;
    Ok((stream, started.elapsed()))
}

async fn handshake(spec: &WsSpec, address: &str, connector: Connector) -> Result<Stream, Failure> {
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|err| net::connect_failure(address, &err))?;
    let _ = tcp.set_nodelay(true);
    let mut request = spec
        .url
        .as_str()
        .into_client_request()
        .map_err(|err| Failure::from_error("not a WebSocket URL", &err))?;
    for header in &spec.headers {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| Failure::new(format!("`{}` is not a header name", header.name)))?;
        let mut value = HeaderValue::from_str(&header.value.value).map_err(|_| {
            Failure::new(format!(
                "the value of header `{}` is not valid",
                header.name
            ))
        })?;
        value.set_sensitive(header.value.secret);
        request.headers_mut().insert(name, value);
    }
    let (stream, _) =
        tokio_tungstenite::client_async_tls_with_config(request, tcp, None, Some(connector))
            .await
            .map_err(|err| failure(address, &err))?;
    Ok(stream)
}

/// A WebSocket error, said about the host.
pub fn failure(address: &str, error: &tungstenite::Error) -> Failure {
    match error {
        tungstenite::Error::Http(response) => Failure::new(format!(
            "{address} answered {} instead of switching to WebSocket",
            response.status()
        )),
        tungstenite::Error::Tls(tungstenite::error::TlsError::Rustls(tls)) => {
            match net::classify(address, tls.as_ref()) {
                Some(known) => known.into(),
                None => Failure::from_error(format!("TLS with {address} failed"), tls.as_ref()),
            }
        }
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            Failure::new(format!("the connection to {address} is closed"))
        }
        other => match net::classify(address, other) {
            Some(known) => known.into(),
            None => Failure::from_error(format!("WebSocket with {address} failed"), other),
        },
    }
}

/// What `recv` hands back.
pub enum Received {
    Text(String),
    Binary(Vec<u8>),
}

/// The next text or binary message; pings are answered on the way.
pub async fn receive(stream: &mut Stream, address: &str) -> Result<Received, Failure> {
    loop {
        let Some(message) = stream.next().await else {
            return Err(Failure::new(format!("{address} closed the connection")));
        };
        match message.map_err(|err| failure(address, &err))? {
            Message::Text(text) => return Ok(Received::Text(text.as_str().to_owned())),
            Message::Binary(bytes) => return Ok(Received::Binary(bytes.to_vec())),
            Message::Close(frame) => {
                let why = frame.map_or_else(String::new, |f| {
                    format!(" (code {}: {})", u16::from(f.code), f.reason)
                });
                return Err(Failure::new(format!(
                    "{address} closed the connection{why}"
                )));
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
        }
    }
}

pub async fn send(stream: &mut Stream, address: &str, message: Message) -> Result<(), Failure> {
    stream
        .send(message)
        .await
        .map_err(|err| failure(address, &err))
}

/// Closes politely, but gives up after a short wait: a server that never answers the close
/// must not hold the run.
pub async fn close(stream: &mut Stream) {
    let _ = tokio::time::timeout(Duration::from_secs(2), stream.close(None)).await;
}
