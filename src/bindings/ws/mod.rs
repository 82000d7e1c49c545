//! `ws::`: WebSocket connections (send, receive, close) and a capacity probe that opens many at
//! once.

use std::sync::Arc;
use std::time::Duration;

use rhai::{Dynamic, EvalAltResult, Map};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::bindings::options;
use crate::engine::binding::{Call, Failure, Family};
use crate::engine::context::RunContext;
use crate::transcript::event::Effect;

pub mod capacity;
pub mod connection;

use connection::{Received, Stream, WsSpec};

type Outcome<T> = Result<T, Box<EvalAltResult>>;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_RECV_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_HOLD: Duration = Duration::from_millis(1000);

/// An open WebSocket, shared by every script value that refers to it.
#[derive(Clone)]
pub struct WsConnection {
    stream: Arc<tokio::sync::Mutex<Option<Stream>>>,
    target: String,
    address: String,
    effect: Effect,
}

pub fn family(ctx: &Arc<RunContext>) -> Family {
    let mut family = Family::new("ws");
    family
        .module
        .set_custom_type::<WsConnection>("WsConnection");
    connect_functions(&mut family, ctx);
    capacity_functions(&mut family, ctx);
    methods(&mut family, ctx);
    family
}

fn connect_functions(family: &mut Family, ctx: &Arc<RunContext>) {
    let c = ctx.clone();
    family.function(
        "connect",
        Some(Effect::Read),
        &["url: &str", "WsConnection"],
        &[
            "Opens a WebSocket (`ws://` or `wss://`, certificate verified) within 10 s and returns the connection: `send(message)`, `recv(seconds)` and `close()`.",
            "",
            "```rhai",
            "let socket = ws::connect(\"wss://api.example.com/ws/market\");",
            "check(\"Market data arrives\", || socket.recv(5) != \"\");",
            "```",
        ],
        move |url: &str| connect(&c, url, &Map::new()),
    );
    let c = ctx.clone();
    family.function(
        "connect",
        Some(Effect::Read),
        &["url: &str", "options: Map", "WsConnection"],
        &[
            "`ws::connect` with options: `headers`, `bearer` (a token, usually a secret), `timeout` (seconds to open, default 10), `ca` (a PEM bundle to trust, relative to the runbook's folder; default: the environment's `ca` setting), `effect` (of `send`: a mutation unless `\"read\"`, as for a subscription).",
            "",
            "```rhai",
            "let socket = ws::connect(url, #{bearer: secret(\"SMOKE_TOKEN\"), effect: \"read\"});",
            "```",
        ],
        move |url: &str, options: Map| connect(&c, url, &options),
    );
}

fn capacity_functions(family: &mut Family, ctx: &Arc<RunContext>) {
    let c = ctx.clone();
    family.function(
        "capacity",
        Some(Effect::Read),
        &["url: &str", "count: i64", "Map"],
        &[
            "Opens `count` WebSockets at once, holds those that opened for a second, closes them and reports `#{requested, opened, failed, errors, p50, p95, p99, max}`: `errors` lists `#{message, count}`, the rest are connect times in ms.",
            "",
            "```rhai",
            "let load = ws::capacity(\"wss://api.example.com/ws/market\", 200);",
            "check(\"200 market-data sockets\", || load.failed == 0 && load.p95 < 1000);",
            "```",
        ],
        move |url: &str, count: i64| capacity(&c, url, count, &Map::new()),
    );
    let c = ctx.clone();
    family.function(
        "capacity",
        Some(Effect::Read),
        &["url: &str", "count: i64", "options: Map", "Map"],
        &[
            "`ws::capacity` with options: `hold_ms` (how long to hold the open connections, default 1000), `timeout` (seconds each may take to open, default 10), `headers`, `bearer`, `ca`.",
            "",
            "```rhai",
            "let load = ws::capacity(url, 500, #{hold_ms: 5000, timeout: 5});",
            "```",
        ],
        move |url: &str, count: i64, options: Map| capacity(&c, url, count, &options),
    );
}

fn methods(family: &mut Family, ctx: &Arc<RunContext>) {
    let c = ctx.clone();
    family.method(
        "send",
        Some(Effect::Mutate),
        &["connection: &mut WsConnection", "message: Dynamic", "()"],
        &[
            "Sends a message: text, a blob, or a map or array as JSON text. A mutation unless the connection was opened with `effect: \"read\"`.",
            "",
            "```rhai",
            "socket.send(#{action: \"subscribe\", symbols: [\"AAPL\"]});",
            "```",
        ],
        move |conn: &mut WsConnection, message: Dynamic| send(&c, conn, &message),
    );
    let c = ctx.clone();
    family.method(
        "recv",
        Some(Effect::Read),
        &["connection: &mut WsConnection", "Dynamic"],
        &[
            "The next message (text, or a blob for binary), waiting at most 10 s; no message in time is an error.",
            "",
            "```rhai",
            "let reply = socket.recv();",
            "```",
        ],
        move |conn: &mut WsConnection| recv(&c, conn, DEFAULT_RECV_TIMEOUT),
    );
    let c = ctx.clone();
    family.method(
        "recv",
        Some(Effect::Read),
        &["connection: &mut WsConnection", "seconds: i64", "Dynamic"],
        &[
            "The next message, waiting at most `seconds`; no message in time is an error.",
            "",
            "```rhai",
            "let tick = socket.recv(5);",
            "```",
        ],
        move |conn: &mut WsConnection, secs: i64| recv_for(&c, conn, &Dynamic::from(secs)),
    );
    let c = ctx.clone();
    family.method(
        "recv",
        Some(Effect::Read),
        &["connection: &mut WsConnection", "seconds: f64", "Dynamic"],
        &[
            "The next message, waiting at most `seconds` (a fraction is fine).",
            "",
            "```rhai",
            "let tick = socket.recv(0.5);",
            "```",
        ],
        move |conn: &mut WsConnection, secs: f64| recv_for(&c, conn, &Dynamic::from(secs)),
    );
    let c = ctx.clone();
    family.method(
        "close",
        Some(Effect::Read),
        &["connection: &mut WsConnection", "()"],
        &[
            "Closes the connection; later calls on it fail.",
            "",
            "```rhai",
            "socket.close();",
            "```",
        ],
        move |conn: &mut WsConnection| close(&c, conn),
    );
    for name in ["to_string", "to_debug"] {
        family.method(
            name,
            None,
            &["connection: &mut WsConnection", "String"],
            &["The connection's URL."],
            |conn: &mut WsConnection| format!("WsConnection({})", conn.target),
        );
    }
}

fn parse(ctx: &RunContext, url: &str, options: &Map, extra: &[&str]) -> Result<WsSpec, String> {
    let url = reqwest::Url::parse(url).map_err(|err| format!("`{url}` is not a URL: {err}"))?;
    if !matches!(url.scheme(), "ws" | "wss") {
        return Err(format!(
            "`{}:` is not a WebSocket URL (use ws:// or wss://)",
            url.scheme()
        ));
    }
    let mut spec = WsSpec {
        url,
        headers: Vec::new(),
        timeout: DEFAULT_TIMEOUT,
        ca: None,
        effect: Effect::Mutate,
    };
    for (key, value) in options {
        match key.as_str() {
            "headers" => spec.headers.extend(options::headers(ctx, value)?),
            "bearer" => spec.headers.push(options::bearer(ctx, value)),
            "timeout" => spec.timeout = options::seconds(key, value)?,
            "effect" => {
                let text = value.to_string();
                spec.effect = Effect::parse(&text)
                    .ok_or_else(|| format!("unknown effect `{text}` (read, mutate or notify)"))?;
            }
            "ca" => {}
            other if extra.contains(&other) => {}
            other => {
                let mut known = vec!["headers", "bearer", "timeout", "ca"];
                known.extend(extra);
                return Err(options::unknown(other, &known.join(", ")));
            }
        }
    }
    let host = spec.url.host_str().unwrap_or_default().to_owned();
    spec.ca = options::ca_bundle(ctx, options.get("ca"), &host)?;
    Ok(spec)
}

fn describe(spec: &WsSpec) -> serde_json::Value {
    json!({
        "url": spec.target(),
        "headers": options::shown_headers(&spec.headers),
        "timeout": spec.timeout.as_secs_f64(),
    })
}

fn connect(ctx: &RunContext, url: &str, options: &Map) -> Outcome<WsConnection> {
    let spec = parse(ctx, url, options, &["effect"])
        .map_err(|m| format!("ws::connect on {}: {m}", ctx.masker.mask(url)))?;
    let connection = WsConnection {
        stream: Arc::default(),
        target: spec.target(),
        address: spec.address(),
        effect: spec.effect,
    };
    let planned = connection.clone();
    let opened = connection.clone();
    Call::new(ctx, "ws::connect", Effect::Read, spec.target())
        .args(describe(&spec))
        .run(move || planned, async move {
            let (stream, _) = connection::open(&spec, spec.connector()?).await?;
            *opened.stream.lock().await = Some(stream);
            Ok(opened)
        })
}

fn capacity(ctx: &RunContext, url: &str, count: i64, options: &Map) -> Outcome<Map> {
    let fail = |m: String| format!("ws::capacity on {}: {m}", ctx.masker.mask(url));
    let spec = parse(ctx, url, options, &["hold_ms"]).map_err(fail)?;
    let count = usize::try_from(count)
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| fail(format!("count must be at least 1, not {count}")))?;
    let hold = match options.get("hold_ms") {
        Some(value) => options::millis("hold_ms", value).map_err(fail)?,
        None => DEFAULT_HOLD,
    };
    let mut args = describe(&spec);
    args["count"] = count.into();
    args["hold_ms"] = (hold.as_millis() as u64).into();
    Call::new(ctx, "ws::capacity", Effect::Read, spec.target())
        .args(args)
        .run(Map::new, capacity::measure(spec, count, hold))
}

fn message(value: &Dynamic) -> Message {
    if let Some(blob) = value.clone().try_cast::<rhai::Blob>() {
        return Message::binary(blob);
    }
    if value.is_map() || value.is_array() {
        return Message::text(crate::bindings::http::spec::exposed_json(value).to_string());
    }
    Message::text(options::text_or_secret(value).value)
}

fn send(ctx: &RunContext, conn: &WsConnection, value: &Dynamic) -> Outcome<()> {
    let outgoing = message(value);
    let size = outgoing.len();
    let conn = conn.clone();
    Call::new(ctx, "ws::send", conn.effect, conn.target.clone())
        .args(json!({ "bytes": size }))
        .run(|| (), async move {
            let mut guard = conn.stream.lock().await;
            let stream = open_stream(&mut guard, &conn)?;
            connection::send(stream, &conn.address, outgoing).await
        })
}

fn recv_for(ctx: &RunContext, conn: &WsConnection, seconds: &Dynamic) -> Outcome<Dynamic> {
    let limit = options::seconds("seconds", seconds)
        .map_err(|m| format!("ws::recv on {}: {m}", conn.target))?;
    recv(ctx, conn, limit)
}

fn recv(ctx: &RunContext, conn: &WsConnection, limit: Duration) -> Outcome<Dynamic> {
    let conn = conn.clone();
    Call::new(ctx, "ws::recv", Effect::Read, conn.target.clone())
        .args(json!({ "timeout": limit.as_secs_f64() }))
        .run(|| Dynamic::from(String::new()), async move {
            let mut guard = conn.stream.lock().await;
            let stream = open_stream(&mut guard, &conn)?;
            let received = tokio::time::timeout(limit, connection::receive(stream, &conn.address))
                .await
                .map_err(|_| {
                    Failure::new(format!(
                        "no message from {} within {} s",
                        conn.address,
                        limit.as_secs_f64()
                    ))
                })??;
            Ok(match received {
                Received::Text(text) => Dynamic::from(text),
                Received::Binary(bytes) => Dynamic::from_blob(bytes),
            })
        })
}

fn close(ctx: &RunContext, conn: &WsConnection) -> Outcome<()> {
    let conn = conn.clone();
    Call::new(ctx, "ws::close", Effect::Read, conn.target.clone()).run(|| (), async move {
        if let Some(mut stream) = conn.stream.lock().await.take() {
            connection::close(&mut stream).await;
        }
        Ok(())
    })
}

fn open_stream<'a>(
    guard: &'a mut Option<Stream>,
    conn: &WsConnection,
) -> Result<&'a mut Stream, Failure> {
    guard
        .as_mut()
        .ok_or_else(|| Failure::new(format!("the connection to {} is closed", conn.address)))
}
