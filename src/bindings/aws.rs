//! `aws::`: AWS Secrets Manager over its JSON protocol, signed with SigV4: read a secret,
//! put a new version, and describe its rotation. Credentials come from the standard
//! environment variables; region and endpoint from `[aws]` or the environment.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use reqwest::Url;
use rhai::{Dynamic, Map};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::secret::Found;
use super::secure_http;
use crate::engine::binding::{Call, Failure, Family};
use crate::engine::context::RunContext;
use crate::engine::convert::{from_json, to_json};
use crate::secret::Secret;
use crate::transcript::event::Effect;

type Outcome<T> = Result<T, Box<rhai::EvalAltResult>>;

const SERVICE: &str = "secretsmanager";

/// `[aws]` in runbook.toml, with `[environments.NAME.aws]` laid over it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Else `AWS_REGION`, then `AWS_DEFAULT_REGION`.
    region: Option<String>,
    /// Secrets Manager's endpoint; else `AWS_ENDPOINT_URL_SECRETS_MANAGER`, then
    /// `AWS_ENDPOINT_URL`, then the region's public endpoint.
    endpoint: Option<String>,
    ca_cert: Option<std::path::PathBuf>,
    /// Seconds per request.
    timeout: Option<f64>,
}

/// Secrets Manager in one region, with the credentials to sign for it.
struct SecretsManager {
    endpoint: Url,
    region: String,
    credentials: Credentials,
    client: reqwest::Client,
}

impl SecretsManager {
    fn open(ctx: &RunContext) -> Outcome<Self> {
        let fail = |failure| super::settings::failed(ctx, "aws", failure);
        let settings: Settings = super::settings::read(ctx, "aws").map_err(fail)?;
        let region = settings
            .region
            .or_else(|| env("AWS_REGION"))
            .or_else(|| env("AWS_DEFAULT_REGION"))
            .ok_or_else(|| fail(Failure::new("no region: set [aws] region or AWS_REGION")))?;
        let endpoint = settings
            .endpoint
            .or_else(|| env("AWS_ENDPOINT_URL_SECRETS_MANAGER"))
            .or_else(|| env("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| format!("https://{SERVICE}.{region}.amazonaws.com"));
        let endpoint =
            secure_http::endpoint(&endpoint, "the Secrets Manager endpoint").map_err(fail)?;
        let timeout = settings
            .timeout
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .unwrap_or(secure_http::DEFAULT_TIMEOUT);
        let ca_cert = settings
            .ca_cert
            .map(|path| super::settings::path(ctx, path));
        let client = secure_http::client(ca_cert.as_deref(), timeout).map_err(fail)?;
        Ok(Self {
            endpoint,
            region,
            credentials: credentials(ctx).map_err(fail)?,
            client,
        })
    }

    /// One signed call of `action` (`GetSecretValue`, ...); `None` when the secret does not
    /// exist.
    async fn call(&self, action: &str, body: &Value) -> Result<Option<Value>, Failure> {
        let body = serde_json::to_vec(body)?;
        let target = format!("{SERVICE}.{action}");
        let content_type = "application/x-amz-json-1.1";
        let headers = [
            ("content-type", content_type),
            ("x-amz-target", target.as_str()),
        ];
        let signed = self.sign(&headers, &body)?;
        let mut request = self.client.post(self.endpoint.clone()).body(body);
        for (name, value) in headers.iter().copied().chain(signed.iter().map(pair)) {
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|err| secure_http::send_failed("Secrets Manager", err))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|err| secure_http::send_failed("Secrets Manager", err))?;
        if status.is_success() {
            return serde_json::from_str(&text)
                .map(Some)
                .map_err(|err| Failure::from_error("Secrets Manager answered with no JSON", &err));
        }
        let (kind, message) = error_parts(&text);
        if kind == "ResourceNotFoundException" {
            return Ok(None);
        }
        Err(Failure::new(format!(
            "Secrets Manager answered {status}: {kind}: {message}"
        )))
    }

    /// The SigV4 headers for a request. The body is signed by its digest, so the signer
    /// (which can log what it signs) never sees the secret text.
    fn sign(
        &self,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Vec<(String, String)>, Failure> {
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|err| Failure::from_error("cannot sign the request", &err))?
            .into();
        let digest = hex::encode(Sha256::digest(body));
        let request = SignableRequest::new(
            "POST",
            self.endpoint.as_str(),
            headers.iter().copied(),
            SignableBody::Precomputed(digest),
        )
        .map_err(|err| Failure::from_error("cannot sign the request", &err))?;
        let (instructions, _) = sign(request, &params)
            .map_err(|err| Failure::from_error("cannot sign the request", &err))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect())
    }
}

fn pair((name, value): &(String, String)) -> (&str, &str) {
    (name.as_str(), value.as_str())
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.is_empty())
}

/// The access key from the environment; the secret key and session token are masked.
fn credentials(ctx: &RunContext) -> Result<Credentials, Failure> {
    let (Some(key), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) else {
        return Err(Failure::new(
            "no credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones)",
        ));
    };
    ctx.masker.add(&secret);
    let token = env("AWS_SESSION_TOKEN");
    if let Some(token) = &token {
        ctx.masker.add(token);
    }
    Ok(Credentials::new(key, secret, token, None, "environment"))
}

/// An AWS error body's type (without its namespace) and message. Secrets Manager answers in
/// JSON; errors raised before the service (signature checks) can come as XML.
fn error_parts(text: &str) -> (String, String) {
    if text.trim_start().starts_with('<') {
        let kind = xml_element(text, "Code").unwrap_or("error");
        let message = xml_element(text, "Message").unwrap_or("");
        return (kind.to_owned(), message.to_owned());
    }
    let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let kind = body["__type"]
        .as_str()
        .map(|t| t.rsplit('#').next().unwrap_or(t).to_owned())
        .unwrap_or_else(|| "error".to_owned());
    let message = body["message"]
        .as_str()
        .or_else(|| body["Message"].as_str())
        .map(str::to_owned)
        .unwrap_or_else(|| secure_http::excerpt(text));
    (kind, message)
}

/// The text of the first `<name>` element; enough for AWS's flat error documents.
fn xml_element<'t>(text: &'t str, name: &str) -> Option<&'t str> {
    let open = format!("<{name}>");
    let start = text.find(&open)? + open.len();
    let end = text[start..].find(&format!("</{name}>"))?;
    Some(text[start..start + end].trim())
}

/// What `secret("aws:ID#KEY")` finds: the secret's text, `None` when there is no secret.
pub fn lookup(ctx: &RunContext, id: &str) -> Outcome<Option<Found>> {
    let value = get_value(ctx, id, json!({ "SecretId": id }), "aws::get_secret")?;
    Ok(value.and_then(|v| secret_text(ctx, &v)).map(Found::Text))
}

/// The secret's text (`SecretString`, or `SecretBinary` as its base64), registered for masking.
fn secret_text(ctx: &RunContext, value: &Value) -> Option<String> {
    let text = value["SecretString"]
        .as_str()
        .or_else(|| value["SecretBinary"].as_str())?
        .to_owned();
    ctx.masker.add(&text);
    Some(text)
}

fn get_value(
    ctx: &RunContext,
    id: &str,
    request: Value,
    name: &'static str,
) -> Outcome<Option<Value>> {
    if ctx.is_plan() {
        return Ok(None);
    }
    let manager = SecretsManager::open(ctx)?;
    let mut args = request.clone();
    args["region"] = Value::String(manager.region.clone());
    Call::new(ctx, name, Effect::Read, id)
        .args(args)
        .run(|| None, async move {
            let value = manager.call("GetSecretValue", &request).await?;
            // Registered inside the call, before its answer can be logged anywhere.
            if let Some(value) = &value {
                secret_text(ctx, value);
            }
            Ok(value)
        })
}

pub fn family(ctx: &Arc<RunContext>) -> Family {
    let mut family = Family::new("aws");
    let c = ctx.clone();
    family.function(
        "get_secret",
        Some(Effect::Read),
        &["id: &str", "Map"],
        &[
            "Reads a Secrets Manager secret (by name or ARN): `#{name, arn, version_id, version_stages, created_date, value}`, where `value` is a `Secret`; a secret holding a JSON object also gets `fields`, each a `Secret`.",
            "",
            "```rhai",
            "let db = aws::get_secret(\"prod/elson/database\");",
            "check(\"Database password is set\", || db.fields.password.len() >= 16);",
            "```",
        ],
        move |id: &str| get_secret(&c, id, &Map::new()),
    );
    let c = ctx.clone();
    family.function(
        "get_secret",
        Some(Effect::Read),
        &["id: &str", "options: Map", "Map"],
        &[
            "`aws::get_secret` with options: `version_stage` (`AWSCURRENT`, `AWSPREVIOUS`, `AWSPENDING`) or `version_id`.",
            "",
            "```rhai",
            "let previous = aws::get_secret(\"prod/elson/api\", #{version_stage: \"AWSPREVIOUS\"});",
            "```",
        ],
        move |id: &str, options: Map| get_secret(&c, id, &options),
    );
    let c = ctx.clone();
    family.function(
        "put_secret",
        Some(Effect::Mutate),
        &["id: &str", "value: Dynamic", "Map"],
        &[
            "Puts a new version of a secret and makes it `AWSCURRENT`. `value` is a `Secret`, a string, or a map (stored as a JSON object; its values may be secrets). Returns `#{name, arn, version_id, version_stages}`.",
            "",
            "```rhai",
            "aws::put_secret(\"prod/elson/api\", #{API_KEY: secrets::generate(40)});",
            "```",
        ],
        move |id: &str, value: Dynamic| put_secret(&c, id, value),
    );
    let c = ctx.clone();
    family.function(
        "describe_rotation",
        Some(Effect::Read),
        &["id: &str", "Map"],
        &[
            "A secret's rotation: `#{name, arn, rotation_enabled, rotation_lambda_arn, rotation_rules, last_rotated_date, last_changed_date, next_rotation_date, days_since_rotation, versions}`. Dates are RFC 3339; `days_since_rotation` is `()` for a secret never rotated.",
            "",
            "```rhai",
            "check(\"API key rotated this month\", || aws::describe_rotation(\"prod/elson/api\").days_since_rotation <= 31);",
            "```",
        ],
        move |id: &str| describe_rotation(&c, id),
    );
    family
}

fn get_secret(ctx: &RunContext, id: &str, options: &Map) -> Outcome<Map> {
    let mut request = json!({ "SecretId": id });
    for (key, value) in options {
        let field = match key.as_str() {
            "version_stage" => "VersionStage",
            "version_id" => "VersionId",
            other => {
                return Err(format!(
                    "aws::get_secret: unknown option `{other}` (known: version_stage, version_id)"
                )
                .into());
            }
        };
        request[field] = Value::String(value.to_string());
    }
    let Some(value) = get_value(ctx, id, request, "aws::get_secret")? else {
        if ctx.is_plan() {
            return Ok(Map::new());
        }
        return Err(format!("aws::get_secret on {id}: no such secret").into());
    };
    let text = secret_text(ctx, &value).unwrap_or_default();
    let mut map = Map::new();
    map.insert("name".into(), from_json(&value["Name"]));
    map.insert("arn".into(), from_json(&value["ARN"]));
    map.insert("version_id".into(), from_json(&value["VersionId"]));
    map.insert("version_stages".into(), from_json(&value["VersionStages"]));
    map.insert("created_date".into(), date(&value["CreatedDate"]));
    if let Some(fields) = super::secret::json_fields(&text) {
        let fields: Map = fields
            .into_iter()
            .map(|(key, field)| {
                let secret = super::secret::wrap(ctx, &format!("aws:{id}#{key}"), field);
                (key.into(), Dynamic::from(secret))
            })
            .collect();
        map.insert("fields".into(), fields.into());
    }
    map.insert(
        "value".into(),
        Dynamic::from(Secret::new(format!("aws:{id}"), text)),
    );
    Ok(map)
}

fn put_secret(ctx: &RunContext, id: &str, value: Dynamic) -> Outcome<Map> {
    let text =
        secret_string(ctx, value).map_err(|message| format!("aws::put_secret: {message}"))?;
    if ctx.is_plan() {
        let mut map = Map::new();
        map.insert("name".into(), id.into());
        map.insert("planned".into(), true.into());
        return Ok(map);
    }
    let manager = SecretsManager::open(ctx)?;
    // The token makes a retried request create one version, not two.
    let token = request_token().map_err(|f| super::settings::failed(ctx, "aws::put_secret", f))?;
    let request = json!({ "SecretId": id, "SecretString": text, "ClientRequestToken": token });
    let owned = id.to_owned();
    let answer = Call::new(ctx, "aws::put_secret", Effect::Mutate, id)
        .args(json!({ "region": manager.region, "client_request_token": token }))
        .run(
            || Some(json!({ "Name": owned, "planned": true })),
            async move { manager.call("PutSecretValue", &request).await },
        )?
        .ok_or_else(|| format!("aws::put_secret on {id}: no such secret"))?;
    let mut map = Map::new();
    map.insert("name".into(), from_json(&answer["Name"]));
    map.insert("arn".into(), from_json(&answer["ARN"]));
    map.insert("version_id".into(), from_json(&answer["VersionId"]));
    map.insert("version_stages".into(), from_json(&answer["VersionStages"]));
    if answer["planned"] == Value::Bool(true) {
        map.insert("planned".into(), true.into());
    }
    Ok(map)
}

/// The text to store: a secret's own, a string, or a map as a JSON object.
fn secret_string(ctx: &RunContext, value: Dynamic) -> Result<String, String> {
    if let Some(secret) = value.clone().try_cast::<Secret>() {
        return Ok(secret.expose().to_owned());
    }
    if value.is_string() {
        let text = value.to_string();
        ctx.masker.add(&text);
        return Ok(text);
    }
    let Some(map) = value.clone().try_cast::<Map>() else {
        return Err(format!(
            "`value` is a {}: give a Secret, a string or a map",
            value.type_name()
        ));
    };
    let fields: serde_json::Map<String, Value> = map
        .iter()
        .map(|(key, item)| {
            let item = match item.clone().try_cast::<Secret>() {
                Some(secret) => Value::String(secret.expose().to_owned()),
                None => to_json(item),
            };
            if let Value::String(text) = &item {
                ctx.masker.add(text);
            }
            (key.to_string(), item)
        })
        .collect();
    let text = Value::Object(fields).to_string();
    ctx.masker.add(&text);
    Ok(text)
}

/// A random UUID-shaped idempotency token, as Secrets Manager expects (32 to 64 characters).
fn request_token() -> Result<String, Failure> {
    let mut bytes = [0_u8; 16];
    getrandom::fill(&mut bytes)
        .map_err(|err| Failure::new(format!("no random numbers from the system ({err})")))?;
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = hex::encode(bytes);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

fn describe_rotation(ctx: &RunContext, id: &str) -> Outcome<Map> {
    if ctx.is_plan() {
        return Ok(rotation(&json!({ "Name": id }), 0));
    }
    let manager = SecretsManager::open(ctx)?;
    let request = json!({ "SecretId": id });
    let answer = Call::new(ctx, "aws::describe_rotation", Effect::Read, id)
        .args(json!({ "region": manager.region }))
        .run(|| Some(Value::Null), async move {
            manager.call("DescribeSecret", &request).await
        })?
        .ok_or_else(|| format!("aws::describe_rotation on {id}: no such secret"))?;
    Ok(rotation(&answer, chrono::Utc::now().timestamp()))
}

/// DescribeSecret's answer as the rotation runbook reads it.
fn rotation(answer: &Value, now: i64) -> Map {
    let mut map = Map::new();
    map.insert("name".into(), from_json(&answer["Name"]));
    map.insert("arn".into(), from_json(&answer["ARN"]));
    map.insert(
        "rotation_enabled".into(),
        answer["RotationEnabled"].as_bool().unwrap_or(false).into(),
    );
    map.insert(
        "rotation_lambda_arn".into(),
        from_json(&answer["RotationLambdaARN"]),
    );
    let rules = &answer["RotationRules"];
    let mut rule_map = Map::new();
    rule_map.insert(
        "automatically_after_days".into(),
        from_json(&rules["AutomaticallyAfterDays"]),
    );
    rule_map.insert("duration".into(), from_json(&rules["Duration"]));
    rule_map.insert(
        "schedule_expression".into(),
        from_json(&rules["ScheduleExpression"]),
    );
    map.insert("rotation_rules".into(), rule_map.into());
    for (key, field) in [
        ("last_rotated_date", "LastRotatedDate"),
        ("last_changed_date", "LastChangedDate"),
        ("next_rotation_date", "NextRotationDate"),
    ] {
        map.insert(key.into(), date(&answer[field]));
    }
    let days = answer["LastRotatedDate"]
        .as_f64()
        .map(|at| Dynamic::from((now - at as i64).div_euclid(86_400)))
        .unwrap_or(Dynamic::UNIT);
    map.insert("days_since_rotation".into(), days);
    let versions: Map = answer["VersionIdsToStages"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(version, stages)| (version.as_str().into(), from_json(stages)))
        .collect();
    map.insert("versions".into(), versions.into());
    map
}

/// An AWS timestamp (seconds since the epoch, fractional) as RFC 3339; `()` when absent.
fn date(value: &Value) -> Dynamic {
    let Some(seconds) = value.as_f64() else {
        return Dynamic::UNIT;
    };
    let whole = seconds.floor() as i64;
    let nanos = ((seconds - seconds.floor()) * 1e9) as u32;
    chrono::DateTime::from_timestamp(whole, nanos)
        .map(|at| at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true).into())
        .unwrap_or(Dynamic::UNIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_reads_days_since_the_last_one() {
        let answer = json!({
            "Name": "prod/api", "RotationEnabled": true,
            "RotationRules": {"AutomaticallyAfterDays": 30},
            "LastRotatedDate": 1_700_000_000.5,
            "VersionIdsToStages": {"v1": ["AWSCURRENT"]}
        });
        let map = rotation(&answer, 1_700_000_000 + 40 * 86_400 + 5);
        assert_eq!(map["days_since_rotation"].as_int().unwrap(), 40);
        assert_eq!(map["last_rotated_date"].to_string(), "2023-11-14T22:13:20Z");
        assert!(map["next_rotation_date"].is_unit());
        let never = rotation(&json!({"Name": "x"}), 0);
        assert!(never["days_since_rotation"].is_unit());
    }

    #[test]
    fn error_bodies_name_their_type() {
        let (kind, message) =
            error_parts(r#"{"__type":"com.amazonaws#ResourceNotFoundException","message":"gone"}"#);
        assert_eq!(
            (kind.as_str(), message.as_str()),
            ("ResourceNotFoundException", "gone")
        );
    }

    #[test]
    fn request_tokens_are_uuid_shaped_and_differ() {
        let a = request_token().unwrap();
        assert_eq!(a.len(), 36);
        assert_ne!(a, request_token().unwrap());
    }
}
