//! `jwt::`: reading and verifying JSON Web Tokens with HMAC secrets, RSA, EC and Ed25519 keys
//! or a JWKS URL. Tokens and keys may be secrets; plain tokens are masked from first sight.

use std::sync::Arc;

use jsonwebtoken::Algorithm;
use rhai::{Dynamic, EvalAltResult, Map};
use serde_json::{Value, json};

use crate::bindings::http::exchange::{self, Clients};
use crate::bindings::http::spec;
use crate::bindings::options;
use crate::engine::binding::{Call, Failure, Family};
use crate::engine::bridge;
use crate::engine::context::RunContext;
use crate::engine::convert::from_json;
use crate::transcript::event::Effect;

pub mod verify;

use verify::{KeySource, Parts, Rules};

type Outcome<T> = Result<T, Box<EvalAltResult>>;

const KNOWN: &str = "alg, iss, aud, sub, leeway, required, jwks, timeout, ca";
const DEFAULT_LEEWAY: u64 = 60;
const JWKS_TIMEOUT_SECS: i64 = 10;

pub fn family(ctx: &Arc<RunContext>) -> Family {
    let mut family = Family::new("jwt");
    let clients = Arc::new(Clients::default());
    let c = ctx.clone();
    family.function(
        "decode",
        Some(Effect::Read),
        &["token: Dynamic", "Map"],
        &[
            "Reads a token's header and claims without verifying anything: `#{header, claims, expires_in}` (`expires_in` in seconds, `()` without `exp`). The token is masked in every output from now on.",
            "",
            "```rhai",
            "let token = http::post(`${base}/auth/login`, credentials, #{effect: \"read\"}).json().access_token;",
            "check(\"Access tokens live 15 minutes\", || jwt::decode(token).expires_in <= 900);",
            "```",
        ],
        move |token: Dynamic| decode(&c, &token),
    );
    let (c, k) = (ctx.clone(), clients.clone());
    family.function(
        "verify",
        Some(Effect::Read),
        &["token: Dynamic", "key: Dynamic", "options: Map", "Map"],
        &[
            "Verifies a token's signature with `key` (an HMAC secret, or an RSA, EC or Ed25519 public key or certificate in PEM; text or a secret) and its claims, returning `#{header, claims, expires_in}`; a rejected token is an error saying why (bad signature, expired, unsigned `alg: none`, wrong issuer or audience). Options: `alg` (accepted algorithm or array; default: those of the key's kind), `iss` and `aud` (accepted values), `sub`, `leeway` (seconds of clock skew, default 60), `required` (claims that must be present, default `[\"exp\"]`).",
            "",
            "```rhai",
            "let claims = jwt::verify(token, secret(\"JWT_SECRET\"), #{alg: \"HS256\", iss: \"elson\"}).claims;",
            "```",
        ],
        move |token: Dynamic, key: Dynamic, options: Map| verify(&c, &k, &token, Some(&key), &options),
    );
    let (c, k) = (ctx.clone(), clients.clone());
    family.function(
        "verify",
        Some(Effect::Read),
        &["token: Dynamic", "options: Map", "Map"],
        &[
            "`jwt::verify` with the key from a JWKS URL (`jwks`, fetched within `timeout` seconds, default 10, trusting `ca` besides the public roots): the key named by the token's `kid`, or the only one.",
            "",
            "```rhai",
            "jwt::verify(token, #{jwks: \"https://auth.example.com/.well-known/jwks.json\", aud: \"elson-api\"});",
            "```",
        ],
        move |token: Dynamic, options: Map| verify(&c, &k, &token, None, &options),
    );
    family
}

fn token_text(ctx: &RunContext, token: &Dynamic) -> String {
    options::credential(ctx, token).value
}

fn decode(ctx: &RunContext, token: &Dynamic) -> Outcome<Map> {
    let text = token_text(ctx, token);
    Call::new(ctx, "jwt::decode", Effect::Read, "token").run(Map::new, async move {
        let parts = verify::split(&text).map_err(|r| Failure::new(r.to_string()))?;
        Ok(to_map(&parts))
    })
}

fn to_map(parts: &Parts) -> Map {
    let mut map = Map::new();
    map.insert("header".into(), from_json(&parts.header));
    map.insert("claims".into(), from_json(&parts.claims));
    let expires_in = parts.claims["exp"].as_i64().map_or(Dynamic::UNIT, |exp| {
        Dynamic::from(exp - chrono::Utc::now().timestamp())
    });
    map.insert("expires_in".into(), expires_in);
    map
}

/// The parsed options: the rules, and where the JWKS is if the key comes from one.
struct Request {
    rules: Rules,
    jwks: Option<spec::RequestSpec>,
    shown: Value,
}

fn verify(
    ctx: &Arc<RunContext>,
    clients: &Arc<Clients>,
    token: &Dynamic,
    key: Option<&Dynamic>,
    options: &Map,
) -> Outcome<Map> {
    let text = token_text(ctx, token);
    let request = parse(ctx, options, key.is_some())
        .map_err(|m| format!("jwt::verify: {}", ctx.masker.mask(&m)))?;
    let key = key.map(|k| options::text_or_secret(k).value);
    let target = verify::split(&text)
        .ok()
        .and_then(|p| {
            p.claims["iss"]
                .as_str()
                .map(|iss| format!("token from {iss}"))
        })
        .unwrap_or_else(|| "token".to_owned());
    let (ctx2, clients) = (ctx.clone(), clients.clone());
    let step = bridge::frame().step;
    Call::new(ctx, "jwt::verify", Effect::Read, target)
        .args(request.shown.clone())
        .run(Map::new, async move {
            let source = match (key, request.jwks) {
                (Some(key), _) => KeySource::Text(key),
                (None, Some(jwks)) => KeySource::Jwks(fetch_jwks(ctx2, clients, jwks, step).await?),
                (None, None) => return Err(Failure::new("no key given and no `jwks` URL")),
            };
            let parts = verify::verify(&text, &source, &request.rules)
                .map_err(|r| Failure::new(r.to_string()))?;
            Ok(to_map(&parts))
        })
}

fn parse(ctx: &RunContext, options: &Map, has_key: bool) -> Result<Request, String> {
    let mut rules = Rules {
        algorithms: Vec::new(),
        issuers: Vec::new(),
        audiences: Vec::new(),
        subject: None,
        leeway: DEFAULT_LEEWAY,
        required: vec!["exp".to_owned()],
    };
    let mut fetch = Map::new();
    let mut jwks_url = None;
    for (key, value) in options {
        match key.as_str() {
            "alg" => {
                for name in texts(value) {
                    let alg: Algorithm = name.parse().map_err(|_| {
                        format!("unknown algorithm `{name}` (HS256, RS256, ES256, EdDSA, ...)")
                    })?;
                    rules.algorithms.push(alg);
                }
            }
            "iss" => rules.issuers = texts(value),
            "aud" => rules.audiences = texts(value),
            "sub" => rules.subject = Some(value.to_string()),
            "required" => rules.required = texts(value),
            "leeway" => {
                rules.leeway = u64::from(options::count(key, value)?);
            }
            "jwks" => jwks_url = Some(value.to_string()),
            "timeout" | "ca" => {
                fetch.insert(key.clone(), value.clone());
            }
            other => return Err(options::unknown(other, KNOWN)),
        }
    }
    if !fetch.contains_key("timeout") {
        fetch.insert("timeout".into(), Dynamic::from(JWKS_TIMEOUT_SECS));
    }
    let jwks = match (&jwks_url, has_key) {
        (Some(_), true) => return Err("give a key or a `jwks` URL, not both".to_owned()),
        (Some(url), false) => Some(spec::parse(ctx, Some("GET"), Some(url), &fetch)?),
        (None, true) => None,
        (None, false) => return Err("no key: give one, or a `jwks` URL in the options".to_owned()),
    };
    let shown = json!({
        "alg": rules.algorithms.iter().map(|a| format!("{a:?}")).collect::<Vec<_>>(),
        "iss": rules.issuers,
        "aud": rules.audiences,
        "leeway": rules.leeway,
        "jwks": jwks.as_ref().map(spec::RequestSpec::target),
    });
    Ok(Request { rules, jwks, shown })
}

/// A string or an array of strings, as a list.
fn texts(value: &Dynamic) -> Vec<String> {
    match value.clone().try_cast::<rhai::Array>() {
        Some(items) => items.iter().map(|v| v.to_string()).collect(),
        None => vec![value.to_string()],
    }
}

async fn fetch_jwks(
    ctx: Arc<RunContext>,
    clients: Arc<Clients>,
    request: spec::RequestSpec,
    step: Option<u64>,
) -> Result<Value, Failure> {
    let url = request.target();
    let response = exchange::send(ctx, clients, request, step)
        .await
        .map_err(|failure| Failure::new(format!("cannot fetch the JWKS: {}", failure.message)))?;
    let data = response.data();
    if data.status != 200 {
        return Err(Failure::new(format!(
            "the JWKS at {url} answered {} instead of 200",
            data.status
        )));
    }
    serde_json::from_str(&data.text)
        .map_err(|err| Failure::new(format!("the JWKS at {url} is not JSON: {err}")))
}
