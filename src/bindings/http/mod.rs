//! `http::`: HTTP and HTTPS requests with certificate verification always on, secrets in
//! headers that never reach an output, and responses scripts can inspect.

use std::sync::Arc;

use futures_util::StreamExt;
use rhai::{Array, Dynamic, EvalAltResult, Map};
use serde_json::json;

use crate::bindings::options;
use crate::engine::binding::{Call, Failure, Family};
use crate::engine::bridge;
use crate::engine::context::RunContext;
use crate::transcript::event::Effect;

pub mod error;
pub mod exchange;
pub mod response;
pub mod spec;

use exchange::Clients;
use response::{HttpResponse, ResponseData};
use spec::RequestSpec;

type Outcome<T> = Result<T, Box<EvalAltResult>>;

/// How many requests of one `get_all` are in flight at once unless the script says otherwise.
const DEFAULT_CONCURRENCY: usize = 256;

pub fn family(ctx: &Arc<RunContext>) -> Family {
    let mut family = Family::new("http");
    let clients = Arc::new(Clients::default());
    requests(&mut family, ctx, &clients);
    shorthands(&mut family, ctx, &clients);
    fan_out(&mut family, ctx, &clients);
    response::register(&mut family);
    family
}

/// Everything a registration closure needs.
#[derive(Clone)]
struct Shared {
    ctx: Arc<RunContext>,
    clients: Arc<Clients>,
}

fn requests(family: &mut Family, ctx: &Arc<RunContext>, clients: &Arc<Clients>) {
    let s = Shared {
        ctx: ctx.clone(),
        clients: clients.clone(),
    };
    family.function(
        "request",
        Some(Effect::Mutate),
        &["request: Map", "HttpResponse"],
        &[
            "Sends a request described by a map: `method` (default GET), `url`, `headers` (values may be secrets), `bearer` (a token, usually a secret), `query` (a map), `body` (text, a secret, a blob, or a map sent as JSON), `json` (any value, sent as JSON), `timeout` (seconds for each attempt, redirects and body included, default 30), `connect_timeout` (default 10), `follow_redirects` (default true), `max_redirects` (default 10), `retries` (idempotent methods only; backoff with jitter, on connection errors, timeouts and 502/503/504), `ca` (a PEM bundle to trust besides the public roots, relative to the runbook's folder; default: the environment's `ca` setting) and `effect`. GET and HEAD are reads; other methods are mutations unless `effect: \"read\"` says otherwise, so dry runs skip them.",
            "",
            "The response has `status`, `ok`, `headers` (lower-case names), `header(name)`, `text`, `json()`, `elapsed_ms`, `url` (the final one), `redirects` (`#{status, url}` each), `version` and `method`. Proxies come from `HTTPS_PROXY`, `HTTP_PROXY` and `NO_PROXY`.",
            "",
            "```rhai",
            "let resp = http::request(#{method: \"PUT\", url: `${base}/flags/maintenance`, json: #{on: false}, bearer: secret(\"ADMIN_TOKEN\")});",
            "```",
        ],
        move |request: Map| perform(&s, "http::request", None, None, &request),
    );
    let s = Shared {
        ctx: ctx.clone(),
        clients: clients.clone(),
    };
    family.function(
        "preflight",
        Some(Effect::Read),
        &["url: &str", "origin: &str", "options: Map", "HttpResponse"],
        &[
            "Sends a CORS preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`) as a browser would before a cross-origin request; a read. Options: `method` (the method asked about, default GET), `request_headers` (header names asked about, text or an array) and the options of `http::request`.",
            "",
            "```rhai",
            "let resp = http::preflight(`${api}/v1/portfolio`, \"https://app.example.com\", #{method: \"POST\", request_headers: [\"authorization\"]});",
            "let allowed = resp.header(\"access-control-allow-origin\");",
            "```",
        ],
        move |url: &str, origin: &str, options: Map| preflight(&s, url, origin, options),
    );
}

fn shorthands(family: &mut Family, ctx: &Arc<RunContext>, clients: &Arc<Clients>) {
    for (name, method, qualified) in [("get", "GET", "http::get"), ("head", "HEAD", "http::head")] {
        let s = Shared {
            ctx: ctx.clone(),
            clients: clients.clone(),
        };
        family.function(
            name,
            Some(Effect::Read),
            &["url: &str", "HttpResponse"],
            &[
                &format!("Sends a {method} request and returns the response, whatever its status; see `http::request` for what a response holds."),
                "",
                "```rhai",
                &format!("check(\"Health endpoint answers\", || http::{name}(`${{base}}/health`).status == 200);"),
                "```",
            ],
            move |url: &str| perform(&s, qualified, Some(method), Some(url), &Map::new()),
        );
        let s = Shared {
            ctx: ctx.clone(),
            clients: clients.clone(),
        };
        family.function(
            name,
            Some(Effect::Read),
            &["url: &str", "options: Map", "HttpResponse"],
            &[
                &format!("`http::{name}` with the options of `http::request` (`headers`, `bearer`, `query`, `timeout`, `follow_redirects`, `retries`, `ca`, ...)."),
                "",
                "```rhai",
                &format!("let resp = http::{name}(`${{base}}/v1/me`, #{{bearer: secret(\"SMOKE_TOKEN\"), timeout: 5}});"),
                "```",
            ],
            move |url: &str, options: Map| perform(&s, qualified, Some(method), Some(url), &options),
        );
    }
    let s = Shared {
        ctx: ctx.clone(),
        clients: clients.clone(),
    };
    family.function(
        "post",
        Some(Effect::Mutate),
        &["url: &str", "body: Dynamic", "HttpResponse"],
        &[
            "Sends a POST: `body` is text, a secret or a blob, or a map or array sent as JSON. A mutation: dry runs do not send it.",
            "",
            "```rhai",
            "let resp = http::post(`${base}/cache/warm`, #{regions: [\"eu\"]});",
            "```",
        ],
        move |url: &str, body: Dynamic| post(&s, url, &body, &Map::new()),
    );
    let s = Shared {
        ctx: ctx.clone(),
        clients: clients.clone(),
    };
    family.function(
        "post",
        Some(Effect::Mutate),
        &["url: &str", "body: Dynamic", "options: Map", "HttpResponse"],
        &[
            "`http::post` with the options of `http::request`; `effect: \"read\"` for a POST that changes nothing (a search, a login), so dry runs send it.",
            "",
            "```rhai",
            "let login = http::post(`${base}/auth/login`, #{user: \"smoke\", password: secret(\"SMOKE_PASSWORD\")}, #{effect: \"read\"});",
            "```",
        ],
        move |url: &str, body: Dynamic, options: Map| post(&s, url, &body, &options),
    );
}

fn fan_out(family: &mut Family, ctx: &Arc<RunContext>, clients: &Arc<Clients>) {
    let s = Shared {
        ctx: ctx.clone(),
        clients: clients.clone(),
    };
    family.function(
        "get_all",
        Some(Effect::Read),
        &["requests: Array", "Array"],
        &[
            "Sends many requests at once (each a URL, or a map as `http::request` takes) and returns the responses in the same order. Fails naming every request that failed.",
            "",
            "```rhai",
            "let statuses = http::get_all([`${a}/health`, `${b}/health`]).map(|r| r.status);",
            "```",
        ],
        move |requests: Array| get_all(&s, requests, &Map::new()),
    );
    let s = Shared {
        ctx: ctx.clone(),
        clients: clients.clone(),
    };
    family.function(
        "get_all",
        Some(Effect::Read),
        &["requests: Array", "options: Map", "Array"],
        &[
            "`http::get_all` with options for every request (those of `http::request`), plus `concurrency` (requests in flight at once, default 256) and `keep_errors` (return a failed request as a response with `status` 0 and its `error`, instead of failing the call).",
            "",
            "```rhai",
            "let burst = http::get_all(range(0, 100).map(|_| url), #{keep_errors: true, timeout: 5});",
            "let limited = burst.filter(|r| r.status == 429).len();",
            "```",
        ],
        move |requests: Array, options: Map| get_all(&s, requests, &options),
    );
}

/// An error found before anything was sent: `name on target: message`, masked.
fn refused(s: &Shared, name: &str, target: Option<&str>, message: &str) -> Box<EvalAltResult> {
    let text = match target {
        Some(target) => format!("{name} on {}: {message}", shown_target(target)),
        None => format!("{name}: {message}"),
    };
    s.ctx.masker.mask(&text).into()
}

/// A URL as messages may show it: without credentials or query when it parses.
fn shown_target(url: &str) -> String {
    reqwest::Url::parse(url).map_or_else(|_| url.to_owned(), |u| spec::shown_url(&u))
}

fn perform(
    s: &Shared,
    name: &'static str,
    method: Option<&str>,
    url: Option<&str>,
    options: &Map,
) -> Outcome<HttpResponse> {
    let target = url
        .map(str::to_owned)
        .or_else(|| options.get("url").map(|u| u.to_string()));
    let spec = spec::parse(&s.ctx, method, url, options)
        .map_err(|message| refused(s, name, target.as_deref(), &message))?;
    run(s, name, spec)
}

fn run(s: &Shared, name: &'static str, spec: RequestSpec) -> Outcome<HttpResponse> {
    let planned = planned_response(&spec);
    let call = Call::new(&s.ctx, name, spec.effect, spec.target()).args(spec.describe());
    let step = bridge::frame().step;
    let work = exchange::send(s.ctx.clone(), s.clients.clone(), spec, step);
    call.run(move || planned, work)
}

fn planned_response(spec: &RequestSpec) -> HttpResponse {
    HttpResponse::new(ResponseData {
        method: spec.method.to_string(),
        status: 200,
        url: spec.target(),
        planned: true,
        ..ResponseData::default()
    })
}

fn post(s: &Shared, url: &str, body: &Dynamic, options: &Map) -> Outcome<HttpResponse> {
    let mut spec = spec::parse(&s.ctx, Some("POST"), Some(url), options)
        .map_err(|message| refused(s, "http::post", Some(url), &message))?;
    spec::body(&mut spec, body);
    run(s, "http::post", spec)
}

fn preflight(s: &Shared, url: &str, origin: &str, mut options: Map) -> Outcome<HttpResponse> {
    let asked = options
        .remove("method")
        .map_or_else(|| "GET".to_owned(), |m| m.to_string().to_uppercase());
    let request_headers =
        options
            .remove("request_headers")
            .map(|h| match h.clone().try_cast::<Array>() {
                Some(names) => names
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                None => h.to_string(),
            });
    let mut spec = spec::parse(&s.ctx, Some("OPTIONS"), Some(url), &options)
        .map_err(|message| refused(s, "http::preflight", Some(url), &message))?;
    spec.effect = Effect::Read;
    let mut add = |name: &str, value: String| {
        spec.headers.push(options::Header {
            name: name.to_owned(),
            value: options::Sensitive {
                value,
                secret: false,
            },
        })
    };
    add("Origin", origin.to_owned());
    add("Access-Control-Request-Method", asked);
    if let Some(names) = request_headers {
        add("Access-Control-Request-Headers", names);
    }
    run(s, "http::preflight", spec)
}

/// Options of `get_all` itself, taken out of the map before each request is parsed.
struct FanOut {
    concurrency: usize,
    keep_errors: bool,
}

fn fan_out_options(options: &mut Map) -> Result<FanOut, String> {
    let mut fan = FanOut {
        concurrency: DEFAULT_CONCURRENCY,
        keep_errors: false,
    };
    if let Some(value) = options.remove("concurrency") {
        fan.concurrency = options::count("concurrency", &value)?.max(1) as usize;
    }
    if let Some(value) = options.remove("keep_errors") {
        fan.keep_errors = options::boolean("keep_errors", &value)?;
    }
    Ok(fan)
}

fn get_all(s: &Shared, requests: Array, options: &Map) -> Outcome<Array> {
    let name = "http::get_all";
    let mut shared = options.clone();
    let fan = fan_out_options(&mut shared).map_err(|m| refused(s, name, None, &m))?;
    let mut specs = Vec::with_capacity(requests.len());
    for (index, item) in requests.iter().enumerate() {
        let spec = item_spec(s, item, &shared).map_err(|message| {
            refused(s, name, None, &format!("request {}: {message}", index + 1))
        })?;
        specs.push(spec);
    }
    let effect = specs.iter().map(|s| s.effect).max().unwrap_or(Effect::Read);
    let call = Call::new(&s.ctx, name, effect, fan_out_target(&specs)).args(json!({
        "count": specs.len(),
        "requests": specs.iter().take(10).map(RequestSpec::describe).collect::<Vec<_>>(),
    }));
    let planned: Array = specs
        .iter()
        .map(|spec| Dynamic::from(planned_response(spec)))
        .collect();
    let step = bridge::frame().step;
    let work = send_all(s.clone(), specs, fan, step);
    call.run(move || planned, work)
}

fn item_spec(s: &Shared, item: &Dynamic, shared: &Map) -> Result<RequestSpec, String> {
    match item.clone().try_cast::<Map>() {
        Some(own) => {
            let mut merged = shared.clone();
            merged.extend(own);
            spec::parse(&s.ctx, None, None, &merged)
        }
        None => spec::parse(&s.ctx, None, Some(&item.to_string()), shared),
    }
}

/// `N requests to a, b`: the distinct hosts a fan-out reaches.
fn fan_out_target(specs: &[RequestSpec]) -> String {
    let mut addresses: Vec<String> = Vec::new();
    for spec in specs {
        let address = spec.address();
        if !addresses.contains(&address) {
            addresses.push(address);
        }
    }
    format!("{} requests to {}", specs.len(), addresses.join(", "))
}

async fn send_all(
    s: Shared,
    specs: Vec<RequestSpec>,
    fan: FanOut,
    step: Option<u64>,
) -> Result<Array, Failure> {
    let total = specs.len();
    let described: Vec<(String, String)> = specs
        .iter()
        .map(|spec| (spec.method.to_string(), spec.target()))
        .collect();
    let results: Vec<Result<HttpResponse, Failure>> = futures_util::stream::iter(
        specs
            .into_iter()
            .map(|spec| exchange::send(s.ctx.clone(), s.clients.clone(), spec, step)),
    )
    .buffered(fan.concurrency)
    .collect()
    .await;
    let mut responses = Array::with_capacity(total);
    let mut failures = Vec::new();
    for (index, result) in results.into_iter().enumerate() {
        let (method, url) = &described[index];
        match result {
            Ok(response) => responses.push(Dynamic::from(response)),
            Err(failure) if fan.keep_errors => {
                responses.push(Dynamic::from(HttpResponse::new(ResponseData {
                    method: method.clone(),
                    url: url.clone(),
                    error: s.ctx.masker.mask(&failure.message),
                    ..ResponseData::default()
                })));
            }
            Err(failure) => failures.push(format!(
                "request {} of {total} ({method} {url}): {}",
                index + 1,
                failure.message
            )),
        }
    }
    if failures.is_empty() {
        return Ok(responses);
    }
    let count = failures.len();
    let mut failure = Failure::new(format!("{count} of {total} requests failed"));
    failure.causes = failures.into_iter().take(20).collect();
    Err(failure)
}
