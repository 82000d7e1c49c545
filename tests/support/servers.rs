//! Real servers on loopback for the web tests: an HTTP/HTTPS application with good and bad
//! routes, a plain-HTTP redirector, WebSocket echo servers with an optional connection limit,
//! a CONNECT proxy, and a black hole that accepts connections and never answers.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::server::{
    ErrorResponse, Request as WsRequest, Response as WsResponse,
};

use super::pki::{Kind, Pki};

/// Requests `/limited` and `/limited-bare` answer before they start refusing.
pub const RATE_LIMIT: u32 = 10;

/// The runtime every test server runs on, for the life of the test process.
fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("test runtime")
    })
}

fn listen() -> (TcpListener, u16) {
    let std = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    std.set_nonblocking(true).expect("non-blocking listener");
    let port = std.local_addr().expect("local address").port();
    let _guard = runtime().enter();
    (TcpListener::from_std(std).expect("tokio listener"), port)
}

/// What the application server saw, for tests to assert on.
#[derive(Default)]
pub struct State {
    pub limited: AtomicU32,
    pub bare: AtomicU32,
    pub flaky: AtomicU32,
    pub posts: AtomicU32,
    pub authorization: Mutex<Vec<String>>,
    pub jwks: Mutex<String>,
}

/// A running application server.
pub struct App {
    pub port: u16,
    pub scheme: &'static str,
    pub state: Arc<State>,
}

impl App {
    pub fn url(&self, path: &str) -> String {
        format!("{}://localhost:{}{path}", self.scheme, self.port)
    }
}

/// The application over plain HTTP.
pub fn http_app() -> App {
    let (listener, port) = listen();
    let state = Arc::new(State::default());
    let shared = state.clone();
    runtime().spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(serve(tcp, shared.clone()));
        }
    });
    App {
        port,
        scheme: "http",
        state,
    }
}

/// The application over HTTPS (HTTP/2 and HTTP/1.1), presenting a certificate of `kind`.
pub fn https_app(pki: &Pki, kind: Kind) -> App {
    let (listener, port) = listen();
    let acceptor = acceptor(pki, kind, &[b"h2", b"http/1.1"]);
    let state = Arc::new(State::default());
    let shared = state.clone();
    runtime().spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, state) = (acceptor.clone(), shared.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve(tls, state).await;
                }
            });
        }
    });
    App {
        port,
        scheme: "https",
        state,
    }
}

fn acceptor(pki: &Pki, kind: Kind, alpn: &[&[u8]]) -> TlsAcceptor {
    let served = pki.served(kind);
    let mut config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(served.chain, served.key)
        .expect("server TLS config");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    TlsAcceptor::from(Arc::new(config))
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: S, state: Arc<State>) {
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(route(req, &state).await) }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
}

fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut builder = Response::builder().status(StatusCode::from_u16(status).expect("status"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Full::new(body.into())).expect("response")
}

const GOOD_HEADERS: &[(&str, &str)] = &[
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    (
        "content-security-policy",
        "default-src 'self'; script-src 'self'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("server", "web"),
];

const WEAK_HEADERS: &[(&str, &str)] = &[
    ("strict-transport-security", "max-age=3600"),
    ("content-security-policy", "default-src * 'unsafe-inline'"),
    ("referrer-policy", "unsafe-url"),
    ("server", "nginx/1.18.0"),
    ("x-powered-by", "Express"),
];

const TRACEBACK: &str = "Traceback (most recent call last):\n  File \"/app/main.py\", line 12, in handler\n    raise KeyError('user')\nKeyError: 'user'\n";

async fn route(req: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    if req.uri().path() == "/echo" {
        return echo_request(req).await;
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    match path.as_str() {
        "/good" => reply(200, GOOD_HEADERS, "fine"),
        "/weak" => reply(200, WEAK_HEADERS, "weak"),
        "/json" => reply(
            200,
            &[
                ("content-type", "application/json"),
                ("X-Mixed-Case", "yes"),
            ],
            r#"{"status":"ok","items":[1,2,3]}"#,
        ),
        "/redirect" => reply(302, &[("location", "/good")], ""),
        "/to-echo" => reply(302, &[("location", "/echo-auth")], ""),
        "/away" => {
            let port = query.strip_prefix("port=").unwrap_or_default();
            let location = format!("https://127.0.0.1:{port}/echo-auth");
            reply(302, &[("location", &location)], "")
        }
        "/echo-auth" => {
            let auth = header("authorization");
            state.authorization.lock().expect("lock").push(auth.clone());
            reply(
                200,
                &[("x-echo-authorization", &auth)],
                format!("you sent: {auth}"),
            )
        }
        "/limited" => limited(&state.limited, Some("30")),
        "/limited-bare" => limited(&state.bare, None),
        "/open" => reply(200, &[], "open"),
        "/protected" => match header("authorization").as_str() {
            "Bearer valid-session-token" => reply(200, &[], "welcome"),
            "" => reply(401, &[("www-authenticate", "Bearer")], "log in"),
            _ => reply(403, &[], "bad token"),
        },
        "/careless" => match header("authorization").as_str() {
            "" => reply(401, &[("www-authenticate", "Bearer")], "log in"),
            _ => reply(200, &[], "any token will do"),
        },
        "/flaky" => match state.flaky.fetch_add(1, Ordering::SeqCst) {
            0 | 1 => reply(503, &[], "warming up"),
            _ => reply(200, &[], "ready"),
        },
        "/count" => {
            if req.method() == hyper::Method::POST {
                state.posts.fetch_add(1, Ordering::SeqCst);
            }
            reply(201, &[], "counted")
        }
        "/slow" => {
            let ms: u64 = query
                .strip_prefix("ms=")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            reply(200, &[], "slow")
        }
        "/jwks" => {
            let jwks = state.jwks.lock().expect("lock").clone();
            reply(200, &[("content-type", "application/json")], jwks)
        }
        "/cors/strict" => cors_strict(&header("origin")),
        "/cors/loose" => reply(
            204,
            &[
                ("access-control-allow-origin", "*"),
                ("access-control-allow-credentials", "true"),
                ("access-control-allow-methods", "GET, POST"),
            ],
            "",
        ),
        "/debugapp/console" => reply(200, &[], "<title>Werkzeug Debugger</title> console"),
        p if p.starts_with("/debugapp/") => {
            reply(500, &[("content-type", "text/plain")], TRACEBACK)
        }
        p if p.starts_with("/app/") => reply(
            404,
            &[("content-type", "application/json")],
            r#"{"detail":"Not Found"}"#,
        ),
        _ => reply(404, &[], "not found"),
    }
}

/// The request as JSON: method, query, body and the headers a test asks about.
async fn echo_request(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let echoed = serde_json::json!({
        "method": parts.method.as_str(),
        "query": parts.uri.query().unwrap_or_default(),
        "body": String::from_utf8_lossy(&body),
        "content_type": header("content-type"),
        "custom": header("x-custom"),
    });
    reply(
        200,
        &[("content-type", "application/json")],
        echoed.to_string(),
    )
}

fn limited(seen: &AtomicU32, retry_after: Option<&str>) -> Response<Full<Bytes>> {
    if seen.fetch_add(1, Ordering::SeqCst) < RATE_LIMIT {
        return reply(200, &[], "ok");
    }
    match retry_after {
        Some(seconds) => reply(429, &[("retry-after", seconds)], "slow down"),
        None => reply(429, &[], "slow down"),
    }
}

/// Allows https://app.example.com only, with credentials, as a careful API does.
fn cors_strict(origin: &str) -> Response<Full<Bytes>> {
    if origin == "https://app.example.com" {
        reply(
            204,
            &[
                ("access-control-allow-origin", origin),
                ("access-control-allow-credentials", "true"),
                ("access-control-allow-methods", "GET, POST, PUT"),
                ("vary", "Origin"),
            ],
            "",
        )
    } else {
        reply(204, &[("vary", "Origin")], "")
    }
}

/// A plain-HTTP server that sends everything to the same path on https://localhost:`port`.
pub fn redirector(https_port: u16) -> u16 {
    let (listener, port) = listen();
    runtime().spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| async move {
                    let location = format!("https://localhost:{https_port}{}", req.uri().path());
                    Ok::<_, Infallible>(reply(301, &[("location", &location)], ""))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    port
}

/// A WebSocket echo server (`wss` when a certificate kind is given) that refuses upgrades
/// with 503 beyond `limit` open connections.
pub fn websocket(tls: Option<(&Pki, Kind)>, limit: Option<usize>) -> u16 {
    let (listener, port) = listen();
    let acceptor = tls.map(|(pki, kind)| acceptor(pki, kind, &[b"http/1.1"]));
    let open = Arc::new(AtomicUsize::new(0));
    runtime().spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, open) = (acceptor.clone(), open.clone());
            tokio::spawn(async move {
                match acceptor {
                    Some(acceptor) => {
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            echo(tls, open, limit).await;
                        }
                    }
                    None => echo(tcp, open, limit).await,
                }
            });
        }
    });
    port
}

// The handshake callback's error type is tungstenite's own HTTP response; it cannot be boxed.
#[allow(clippy::result_large_err)]
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(
    io: S,
    open: Arc<AtomicUsize>,
    limit: Option<usize>,
) {
    let admitted = Arc::new(AtomicU32::new(0));
    let flag = admitted.clone();
    let counter = open.clone();
    let callback =
        move |_: &WsRequest, response: WsResponse| -> Result<WsResponse, ErrorResponse> {
            let now_open = counter.fetch_add(1, Ordering::SeqCst) + 1;
            if limit.is_some_and(|limit| now_open > limit) {
                counter.fetch_sub(1, Ordering::SeqCst);
                let refusal = hyper::Response::builder()
                    .status(503)
                    .body(Some("too many connections".to_owned()))
                    .expect("refusal");
                return Err(refusal);
            }
            flag.store(1, Ordering::SeqCst);
            Ok(response)
        };
    let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(io, callback).await else {
        if admitted.load(Ordering::SeqCst) == 1 {
            open.fetch_sub(1, Ordering::SeqCst);
        }
        return;
    };
    while let Some(Ok(message)) = socket.next().await {
        if message.is_text() || message.is_binary() {
            if socket.send(message).await.is_err() {
                break;
            }
        } else if message.is_close() {
            break;
        }
    }
    open.fetch_sub(1, Ordering::SeqCst);
}

/// Accepts TCP connections and never reads or writes a byte.
pub fn black_hole() -> u16 {
    let (listener, port) = listen();
    runtime().spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    port
}

/// An HTTPS proxy (CONNECT only) that records each target and resolves `web.test` itself,
/// so a request for https://web.test:PORT only works through it.
pub fn connect_proxy() -> (u16, Arc<Mutex<Vec<String>>>) {
    let (listener, port) = listen();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    runtime().spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(tunnel(tcp, record.clone()));
        }
    });
    (port, seen)
}

async fn tunnel(mut client: TcpStream, seen: Arc<Mutex<Vec<String>>>) {
    let mut head = Vec::new();
    let mut byte = [0_u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
        if client.read_exact(&mut byte).await.is_err() {
            return;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut words = text.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            .await;
        return;
    };
    seen.lock().expect("lock").push(target.to_owned());
    let Some((host, port)) = target.rsplit_once(':') else {
        return;
    };
    let host = if host == "web.test" {
        "127.0.0.1"
    } else {
        host
    };
    let Ok(address) = format!("{host}:{port}").parse::<SocketAddr>() else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    let Ok(mut upstream) = TcpStream::connect(address).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await
        .is_ok()
    {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}
