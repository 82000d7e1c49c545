//! `alert::`: Slack, PagerDuty (Events API v2), email over SMTP and plain webhooks, called
//! directly or through the named routes of runbook.toml (`alert::notify("oncall", ...)`).
//! Webhook URLs, routing keys and passwords are secrets: resolved through the secret sources,
//! masked, and never part of what is recorded. Message text is masked before it is sent.

mod deliver;
mod direct;
mod email;
mod notify;
mod route;

use std::sync::Arc;

use reqwest::Url;
use rhai::{Array, Dynamic, Map};
use sha2::{Digest, Sha256};

use self::route::PagerDutySettings;
use super::secure_http;
use crate::engine::binding::{Failure, Family};
use crate::engine::context::RunContext;
use crate::secret::Secret;
use crate::transcript::event::Effect;

type Outcome<T> = Result<T, Box<rhai::EvalAltResult>>;
pub fn family(ctx: &Arc<RunContext>) -> Family {
    let mut family = Family::new("alert");
    route_functions(&mut family, ctx);
    direct_functions(&mut family, ctx);
    family
}

fn route_functions(family: &mut Family, ctx: &Arc<RunContext>) {
    let c = ctx.clone();
    family.function(
        "notify",
        Some(Effect::Notify),
        &["route: &str", "message: &str", "Map"],
        &[
            "Sends `message` to every channel of a route from `[alert.routes]` in runbook.toml, each with retries on transient failures and the same dedup key. Every channel is tried; the call fails afterwards if any failed. Returns `#{route, ok, dedup_key, channels}`. A dry run records the message and sends nothing.",
            "",
            "```rhai",
            "alert::notify(\"team\", `Deploy of ${version} to production finished`);",
            "```",
        ],
        move |route: &str, message: &str| notify::notify(&c, route, message, &Map::new()),
    );
    let c = ctx.clone();
    family.function(
        "notify",
        Some(Effect::Notify),
        &["route: &str", "message: &str", "options: Map", "Map"],
        &[
            "`alert::notify` with options: `title`, `severity` (critical, error, warning, info), `dedup_key` (default: derived from the runbook, environment, route and text, so a repeated alert joins the open incident), `action` (PagerDuty: trigger, acknowledge, resolve), `details` (a map for PagerDuty and webhooks).",
            "",
            "```rhai",
            "alert::notify(\"oncall\", \"Error rate above 1%\", #{severity: \"critical\", dedup_key: \"elson-error-rate\"});",
            "```",
        ],
        move |route: &str, message: &str, options: Map| notify::notify(&c, route, message, &options),
    );
    let c = ctx.clone();
    family.function(
        "test",
        Some(Effect::Notify),
        &["route: &str", "Map"],
        &[
            "Sends a test message down a route, proving every channel is reachable. A PagerDuty channel gets a trigger of severity info followed at once by its resolve, so nobody stays paged.",
            "",
            "```rhai",
            "check(\"Alerting works\", || alert::test(\"oncall\").ok);",
            "```",
        ],
        move |route: &str| notify::test(&c, route),
    );
}

fn direct_functions(family: &mut Family, ctx: &Arc<RunContext>) {
    let c = ctx.clone();
    family.function(
        "slack",
        Some(Effect::Notify),
        &["webhook: Dynamic", "message: &str", "Map"],
        &[
            "Posts `message` to a Slack incoming webhook (a `Secret`, or a URL string, which is then masked). Returns `#{ok, attempts, dedup_key}`.",
            "",
            "```rhai",
            "alert::slack(secret(\"SLACK_WEBHOOK_URL\"), \"Maintenance window starts in 10 minutes\");",
            "```",
        ],
        move |webhook: Dynamic, message: &str| direct::slack(&c, webhook, message, &Map::new()),
    );
    let c = ctx.clone();
    family.function(
        "slack",
        Some(Effect::Notify),
        &["webhook: Dynamic", "message: &str", "options: Map", "Map"],
        &[
            "`alert::slack` with options: `blocks` (Block Kit blocks; `message` stays the notification text), `channel`, `username`, `icon_emoji`, `dedup_key`.",
            "",
            "```rhai",
            "alert::slack(secret(\"SLACK_WEBHOOK_URL\"), \"Deployed\", #{blocks: [#{type: \"section\", text: #{type: \"mrkdwn\", text: \"*Deployed* v1.4.2\"}}]});",
            "```",
        ],
        move |webhook: Dynamic, message: &str, options: Map| direct::slack(&c, webhook, message, &options),
    );
    let c = ctx.clone();
    family.function(
        "pagerduty",
        Some(Effect::Notify),
        &["routing_key: Dynamic", "event: Map", "Map"],
        &[
            "Sends an event to PagerDuty's Events API v2 (endpoint: `[alert.pagerduty] url`, default PagerDuty's own). `event` holds `summary`, `severity` (critical, error, warning, info), `source`, `dedup_key`, `action` (trigger, acknowledge, resolve) and optionally `component`, `group`, `class`, `details`. Returns `#{ok, attempts, dedup_key}`.",
            "",
            "```rhai",
            "let page = alert::pagerduty(secret(\"PAGERDUTY_ROUTING_KEY\"), #{summary: \"Rollback started\", severity: \"critical\", source: \"elson-backend\"});",
            "alert::pagerduty(secret(\"PAGERDUTY_ROUTING_KEY\"), #{action: \"resolve\", dedup_key: page.dedup_key});",
            "```",
        ],
        move |key: Dynamic, event: Map| direct::pagerduty(&c, key, &event),
    );
    let c = ctx.clone();
    family.function(
        "email",
        Some(Effect::Notify),
        &["letter: Map", "Map"],
        &[
            "Sends an email `#{to, subject, body}` (`to`: an address or an array; default `[alert.email] to`) through the SMTP server of `[alert.email]`. TLS is required except to a relay on this machine.",
            "",
            "```rhai",
            "alert::email(#{to: \"ops@example.com\", subject: \"Backup verified\", body: \"Restore test passed.\"});",
            "```",
        ],
        move |letter: Map| direct::email(&c, &letter),
    );
    let c = ctx.clone();
    family.function(
        "webhook",
        Some(Effect::Notify),
        &["url: Dynamic", "payload: Dynamic", "Map"],
        &[
            "POSTs `payload` as JSON to a webhook (`url`: a `Secret` or a URL string, which is then masked), with the dedup key in an `Idempotency-Key` header. Secrets inside `payload` are sent masked. Returns `#{ok, attempts, status, dedup_key}`.",
            "",
            "```rhai",
            "alert::webhook(secret(\"STATUSPAGE_HOOK\"), #{status: \"degraded\", component: \"api\"});",
            "```",
        ],
        move |url: Dynamic, payload: Dynamic| direct::webhook(&c, url, payload),
    );
}
fn fail(ctx: &RunContext, subject: &str, failure: Failure) -> Box<rhai::EvalAltResult> {
    super::settings::failed(ctx, subject, failure)
}
/// What a plan sees: nothing failed and nothing was sent, and no secret or setting was
/// needed to say so.
fn planned() -> Map {
    let mut map = Map::new();
    map.insert("ok".into(), true.into());
    map.insert("planned".into(), true.into());
    map.insert("channels".into(), Array::new().into());
    map
}

/// The secret behind a channel setting. A literal URL or key in runbook.toml is refused:
/// the file is shared and versioned, so the secret would already be out.
fn reveal(
    ctx: &RunContext,
    channel: &str,
    field: &str,
    reference: Option<&str>,
) -> Outcome<Secret> {
    let Some(reference) = reference else {
        return Err(fail(
            ctx,
            &format!("[alert.{channel}]"),
            Failure::new(format!(
                "needs `{field}`: a secret reference such as env:NAME or vault:PATH#KEY"
            )),
        ));
    };
    if reference.starts_with("http://") || reference.starts_with("https://") {
        ctx.masker.add(reference);
        return Err(fail(
            ctx,
            &format!("[alert.{channel}] {field}"),
            Failure::new(
                "holds the URL itself, which is a secret: keep it out of runbook.toml and reference it (env:NAME, file:PATH, vault:PATH#KEY)",
            ),
        ));
    }
    super::secret::resolve(ctx, reference)
}

/// A secret URL, checked; its forms are masked so that no log shows it either.
fn secret_url(ctx: &RunContext, secret: Secret) -> Result<Url, Failure> {
    let what = format!("the URL from {}", secret.name());
    let url = secure_http::endpoint(secret.expose(), &what)?;
    ctx.masker.add(secret.expose());
    ctx.masker.add(url.as_str());
    // The path of a webhook URL is its credential; a short one is too common to mask.
    let path = match url.query() {
        Some(query) => format!("{}?{query}", url.path()),
        None => url.path().to_owned(),
    };
    if path.len() >= 16 {
        ctx.masker.add(&path);
    }
    Ok(url)
}

/// A `Secret` or a plain string given by the script; the string is registered for masking.
fn secret_or_text(ctx: &RunContext, value: Dynamic, name: &str) -> Result<Secret, String> {
    if let Some(secret) = value.clone().try_cast::<Secret>() {
        return Ok(secret);
    }
    if value.is_string() {
        let text = value.to_string();
        ctx.masker.add(&text);
        return Ok(Secret::new(name, text));
    }
    Err(format!(
        "`{name}` takes a Secret or a string, not {}",
        value.type_name()
    ))
}

/// A dedup key that stays the same for the same alert from the same runbook and environment.
fn dedup_key(ctx: &RunContext, parts: &[&str]) -> String {
    let mut hasher = Sha256::new();
    for part in [ctx.runbook_display.as_str(), ctx.environment.name.as_str()]
        .iter()
        .chain(parts)
    {
        hasher.update(part.as_bytes());
        hasher.update([0x1f]);
    }
    format!("runbook-{}", &hex::encode(hasher.finalize())[..24])
}

fn host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

fn pagerduty_url(settings: &PagerDutySettings) -> Result<Url, Failure> {
    let url = settings.url.as_deref().unwrap_or(route::PAGERDUTY_EVENTS);
    secure_http::endpoint(url, "[alert.pagerduty] url")
}
