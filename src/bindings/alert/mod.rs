//! `alert::`: Slack, PagerDuty (Events API v2), email over SMTP and plain webhooks, called
//! directly or through the named routes of runbook.toml (`alert::notify("oncall", ...)`).
//! Webhook URLs, routing keys and passwords are secrets: resolved through the secret sources,
//! masked, and never part of what is recorded. Message text is masked before it is sent.

mod deliver;
mod email;
mod route;

use std::sync::Arc;

use reqwest::Url;
use rhai::{Array, Dynamic, Map};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use self::deliver::{Delivery, Receiver, Request, channel_entry, succeeded};
use self::email::{Email, EmailSettings, Letter};
use self::route::{AlertSettings, Channel, PagerDutyEvent, PagerDutySettings, SlackSettings};
use super::secure_http;
use crate::engine::binding::{Failure, Family};
use crate::engine::context::RunContext;
use crate::engine::convert::to_json;
use crate::engine::signal;
use crate::secret::Secret;
use crate::transcript::event::{Effect, LogLevel};

type Outcome<T> = Result<T, Box<rhai::EvalAltResult>>;

/// What `alert::notify` sends down a route.
#[derive(Debug, Clone, Default)]
struct Alert {
    title: Option<String>,
    message: String,
    severity: Option<String>,
    dedup_key: Option<String>,
    action: Option<String>,
    details: Value,
}

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
        move |route: &str, message: &str| notify(&c, route, message, &Map::new()),
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
        move |route: &str, message: &str, options: Map| notify(&c, route, message, &options),
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
        move |route: &str| test(&c, route),
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
        move |webhook: Dynamic, message: &str| slack(&c, webhook, message, &Map::new()),
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
        move |webhook: Dynamic, message: &str, options: Map| slack(&c, webhook, message, &options),
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
        move |key: Dynamic, event: Map| pagerduty(&c, key, &event),
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
        move |letter: Map| send_email(&c, &letter),
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
        move |url: Dynamic, payload: Dynamic| webhook(&c, url, payload),
    );
}

fn fail(ctx: &RunContext, subject: &str, failure: Failure) -> Box<rhai::EvalAltResult> {
    super::settings::failed(ctx, subject, failure)
}

fn notify(ctx: &RunContext, route: &str, message: &str, options: &Map) -> Outcome<Map> {
    let alert = parse_alert(message, options).map_err(|m| format!("alert::notify: {m}"))?;
    send_route(ctx, route, &alert, false)
}

fn test(ctx: &RunContext, route: &str) -> Outcome<Map> {
    let environment = &ctx.environment.name;
    let operator = crate::engine::context::operator();
    let alert = Alert {
        title: Some("runbook alert test".into()),
        message: format!(
            "Test alert for route `{route}` from {operator} on {}, environment {environment}. Nothing needs doing.",
            host()
        ),
        severity: Some("info".into()),
        dedup_key: Some(dedup_key(
            ctx,
            &[route, "test", &chrono::Utc::now().to_rfc3339()],
        )),
        ..Alert::default()
    };
    send_route(ctx, route, &alert, true)
}

/// Sends to every channel of the route, then fails if any channel failed.
/// What a plan sees: nothing was sent, and no secret or setting was needed to say so.
fn planned() -> Map {
    let mut map = Map::new();
    map.insert("ok".into(), false.into());
    map.insert("planned".into(), true.into());
    map.insert("channels".into(), Array::new().into());
    map
}

fn send_route(ctx: &RunContext, route: &str, alert: &Alert, test: bool) -> Outcome<Map> {
    if ctx.is_plan() {
        return Ok(planned());
    }
    let name = if test { "alert::test" } else { "alert::notify" };
    let settings = AlertSettings::load(ctx).map_err(|f| fail(ctx, name, f))?;
    let channels = settings
        .route(route)
        .map_err(|f| fail(ctx, name, f))?
        .to_vec();
    let alert = masked(ctx, alert);
    let key = alert.dedup_key.clone().unwrap_or_else(|| {
        let title = alert.title.as_deref().unwrap_or("");
        dedup_key(ctx, &[route, title, &alert.message])
    });
    let mut entries = Array::new();
    let mut failures = Vec::new();
    for channel in &channels {
        for delivery_alert in channel_alerts(&settings, channel, &alert, test) {
            let sent = prepare(ctx, &settings, route, channel, &delivery_alert, &key, name)
                .and_then(|delivery| delivery.send(ctx));
            match sent {
                Ok(result) => entries.push(channel_entry(channel, Ok(result))),
                Err(err) if signal::as_stop(&err).is_some() => return Err(err),
                Err(err) => {
                    let text = ctx.masker.mask(&error_text(&err));
                    if ctx.is_dry_run() {
                        let _ = crate::engine::core::log(
                            ctx,
                            LogLevel::Warn,
                            format!(
                                "dry run: {route}/{channel} is not ready, a real run would fail: {text}"
                            ),
                        );
                    }
                    failures.push(format!("{channel}: {text}"));
                    entries.push(channel_entry(channel, Err(text)));
                }
            }
        }
    }
    if !failures.is_empty() && !ctx.is_dry_run() {
        return Err(format!(
            "{name} on {route}: {} of {} channels failed\ncaused by: {}",
            failures.len(),
            channels.len(),
            failures.join("\ncaused by: ")
        )
        .into());
    }
    let mut map = Map::new();
    map.insert("route".into(), route.into());
    map.insert("dedup_key".into(), key.into());
    map.insert("ok".into(), entries.iter().all(entry_ok).into());
    map.insert("channels".into(), entries.into());
    Ok(map)
}

/// An error's own message, without Rhai's "Runtime error" prefix.
fn error_text(error: &rhai::EvalAltResult) -> String {
    match signal::root(error) {
        rhai::EvalAltResult::ErrorRuntime(value, _) => value.to_string(),
        other => other.to_string(),
    }
}

fn entry_ok(entry: &Dynamic) -> bool {
    entry.read_lock::<Map>().is_some_and(|map| succeeded(&map))
}

/// A test of a PagerDuty channel resolves the incident it opens.
fn channel_alerts(
    settings: &AlertSettings,
    channel: &str,
    alert: &Alert,
    test: bool,
) -> Vec<Alert> {
    let pagerduty = matches!(settings.channel(channel), Ok(Channel::PagerDuty(_)));
    if !(test && pagerduty) {
        return vec![alert.clone()];
    }
    let resolve = Alert {
        action: Some("resolve".into()),
        ..alert.clone()
    };
    vec![alert.clone(), resolve]
}

fn masked(ctx: &RunContext, alert: &Alert) -> Alert {
    let mut details = alert.details.clone();
    ctx.masker.mask_json(&mut details);
    Alert {
        title: alert.title.as_deref().map(|t| ctx.masker.mask(t)),
        message: ctx.masker.mask(&alert.message),
        details,
        ..alert.clone()
    }
}

fn parse_alert(message: &str, options: &Map) -> Result<Alert, String> {
    let mut alert = Alert {
        message: message.to_owned(),
        ..Alert::default()
    };
    for (key, value) in options {
        let text = || value.to_string();
        match key.as_str() {
            "title" => alert.title = Some(text()),
            "severity" => alert.severity = Some(text()),
            "dedup_key" => alert.dedup_key = Some(text()),
            "action" => alert.action = Some(text()),
            "details" => alert.details = to_json(value),
            other => {
                return Err(format!(
                    "unknown option `{other}` (known: title, severity, dedup_key, action, details)"
                ));
            }
        }
    }
    if let Some(severity) = &alert.severity
        && !route::SEVERITIES.contains(&severity.as_str())
    {
        return Err(format!(
            "unknown severity `{severity}` ({})",
            route::SEVERITIES.join(", ")
        ));
    }
    Ok(alert)
}

/// One channel's delivery of a route's alert.
fn prepare(
    ctx: &RunContext,
    settings: &AlertSettings,
    route: &str,
    channel: &str,
    alert: &Alert,
    key: &str,
    name: &'static str,
) -> Outcome<Delivery> {
    let subject = format!("{name} on {route}/{channel}");
    let failed = |failure| fail(ctx, &subject, failure);
    let found = settings.channel(channel).map_err(failed)?;
    let kind = found.kind();
    let request = match found {
        Channel::Slack(slack) => {
            let url = secret_url(
                ctx,
                reveal(ctx, channel, "webhook", slack.webhook.as_deref())?,
            )
            .map_err(failed)?;
            let body = route::slack_body(&slack, &decorated(alert), None);
            Request::Http {
                receiver: Receiver::Slack,
                url,
                body,
            }
        }
        Channel::PagerDuty(pagerduty) => {
            let routing_key = reveal(
                ctx,
                channel,
                "routing_key",
                pagerduty.routing_key.as_deref(),
            )?;
            let event = route_event(&pagerduty, alert, key);
            event.check().map_err(failed)?;
            Request::Http {
                receiver: Receiver::PagerDuty,
                url: pagerduty_url(&pagerduty).map_err(failed)?,
                body: event.body(routing_key.expose()),
            }
        }
        Channel::Email(mut email) => {
            email.ca_cert = email.ca_cert.map(|path| super::settings::path(ctx, path));
            let password = match email.password.as_deref() {
                Some(reference) => Some(reveal(ctx, channel, "password", Some(reference))?),
                None => None,
            };
            let subject_line = subject_of(alert);
            let body = email_body(ctx, alert, key);
            let letter = Letter {
                to: &email.to,
                subject: &subject_line,
                body: &body,
                dedup_key: key,
            };
            Request::Email(Box::new(
                Email::new(&email, password, &letter).map_err(failed)?,
            ))
        }
        Channel::Webhook(hook) => {
            let url = secret_url(ctx, reveal(ctx, channel, "url", hook.url.as_deref())?)
                .map_err(failed)?;
            Request::Http {
                receiver: Receiver::Webhook,
                url,
                body: webhook_body(ctx, route, alert, key),
            }
        }
    };
    Ok(Delivery {
        name,
        target: format!("{route}/{channel}"),
        args: json!({
            "route": route, "channel": channel, "type": kind, "title": alert.title,
            "message": alert.message, "severity": alert.severity, "action": alert.action,
            "dedup_key": key,
        }),
        request,
        dedup_key: key.to_owned(),
        retry: settings.retry().map_err(|f| fail(ctx, name, f))?,
    })
}

fn route_event(settings: &PagerDutySettings, alert: &Alert, key: &str) -> PagerDutyEvent {
    PagerDutyEvent {
        action: alert.action.clone().unwrap_or_else(|| "trigger".into()),
        dedup_key: key.to_owned(),
        summary: match &alert.title {
            Some(title) => format!("{title}: {}", alert.message),
            None => alert.message.clone(),
        },
        severity: alert
            .severity
            .clone()
            .or_else(|| settings.severity.clone())
            .unwrap_or_else(|| "error".into()),
        source: settings.source.clone().unwrap_or_else(host),
        component: settings.component.clone(),
        group: settings.group.clone(),
        class: settings.class.clone(),
        details: alert.details.clone(),
    }
}

/// The Slack text: severity and title in front of the message when given.
fn decorated(alert: &Alert) -> String {
    let mut text = String::new();
    if let Some(severity) = &alert.severity {
        text.push_str(&format!("[{severity}] "));
    }
    if let Some(title) = &alert.title {
        text.push_str(&format!("*{title}*\n"));
    }
    text.push_str(&alert.message);
    text
}

fn subject_of(alert: &Alert) -> String {
    let first_line = alert.message.lines().next().unwrap_or("");
    let subject = alert.title.as_deref().unwrap_or(first_line);
    let subject = route::truncate(subject, 120);
    match &alert.severity {
        Some(severity) => format!("[{severity}] {subject}"),
        None => subject,
    }
}

fn email_body(ctx: &RunContext, alert: &Alert, key: &str) -> String {
    format!(
        "{}\n\n-- \nSent by runbook {} (environment {}) on {}.\nDedup key: {key}\n",
        alert.message,
        ctx.runbook_display,
        ctx.environment.name,
        host()
    )
}

fn webhook_body(ctx: &RunContext, route: &str, alert: &Alert, key: &str) -> Value {
    json!({
        "route": route,
        "title": alert.title,
        "message": alert.message,
        "severity": alert.severity,
        "action": alert.action.as_deref().unwrap_or("trigger"),
        "dedup_key": key,
        "environment": ctx.environment.name,
        "runbook": ctx.runbook_display,
        "source": host(),
        "details": alert.details,
    })
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

fn slack(ctx: &RunContext, webhook: Dynamic, message: &str, options: &Map) -> Outcome<Map> {
    if ctx.is_plan() {
        return Ok(planned());
    }
    let settings = AlertSettings::load(ctx).map_err(|f| fail(ctx, "alert::slack", f))?;
    let webhook =
        secret_or_text(ctx, webhook, "webhook").map_err(|m| format!("alert::slack: {m}"))?;
    let url = secret_url(ctx, webhook).map_err(|f| fail(ctx, "alert::slack", f))?;
    let mut slack = SlackSettings::default();
    let mut blocks = None;
    let mut key = None;
    for (name, value) in options {
        match name.as_str() {
            "blocks" => {
                let mut json = to_json(value);
                ctx.masker.mask_json(&mut json);
                blocks = Some(json);
            }
            "channel" => slack.channel = Some(value.to_string()),
            "username" => slack.username = Some(value.to_string()),
            "icon_emoji" => slack.icon_emoji = Some(value.to_string()),
            "dedup_key" => key = Some(value.to_string()),
            other => {
                return Err(format!(
                    "alert::slack: unknown option `{other}` (known: blocks, channel, username, icon_emoji, dedup_key)"
                )
                .into());
            }
        }
    }
    let text = ctx.masker.mask(message);
    let key = key.unwrap_or_else(|| dedup_key(ctx, &["slack", &text]));
    Delivery {
        name: "alert::slack",
        target: url.host_str().unwrap_or("slack").to_owned(),
        args: json!({ "message": text, "blocks": blocks.as_ref().map(|b| b.as_array().map_or(0, Vec::len)), "dedup_key": key }),
        request: Request::Http {
            receiver: Receiver::Slack,
            url,
            body: route::slack_body(&slack, &text, blocks),
        },
        dedup_key: key,
        retry: settings.retry().map_err(|f| fail(ctx, "alert::slack", f))?,
    }
    .send(ctx)
}

fn pagerduty(ctx: &RunContext, routing_key: Dynamic, options: &Map) -> Outcome<Map> {
    if ctx.is_plan() {
        return Ok(planned());
    }
    let failed = |f| fail(ctx, "alert::pagerduty", f);
    let settings = AlertSettings::load(ctx).map_err(failed)?;
    let defaults: PagerDutySettings = settings.settings_of("pagerduty").map_err(failed)?;
    let routing_key = secret_or_text(ctx, routing_key, "routing_key")
        .map_err(|m| format!("alert::pagerduty: {m}"))?;
    let event =
        pagerduty_event(ctx, &defaults, options).map_err(|m| format!("alert::pagerduty: {m}"))?;
    event.check().map_err(failed)?;
    let url = pagerduty_url(&defaults).map_err(failed)?;
    Delivery {
        name: "alert::pagerduty",
        target: url.host_str().unwrap_or("pagerduty").to_owned(),
        args: json!({
            "action": event.action, "summary": event.summary, "severity": event.severity,
            "source": event.source, "dedup_key": event.dedup_key,
        }),
        request: Request::Http {
            receiver: Receiver::PagerDuty,
            url,
            body: event.body(routing_key.expose()),
        },
        dedup_key: event.dedup_key.clone(),
        retry: settings.retry().map_err(failed)?,
    }
    .send(ctx)
}

fn pagerduty_event(
    ctx: &RunContext,
    defaults: &PagerDutySettings,
    options: &Map,
) -> Result<PagerDutyEvent, String> {
    let mut event = PagerDutyEvent {
        action: "trigger".into(),
        severity: defaults.severity.clone().unwrap_or_else(|| "error".into()),
        source: defaults.source.clone().unwrap_or_else(host),
        component: defaults.component.clone(),
        group: defaults.group.clone(),
        class: defaults.class.clone(),
        ..PagerDutyEvent::default()
    };
    for (key, value) in options {
        let text = || ctx.masker.mask(&value.to_string());
        match key.as_str() {
            "summary" => event.summary = text(),
            "severity" => event.severity = text(),
            "source" => event.source = text(),
            "dedup_key" => event.dedup_key = text(),
            "action" => event.action = text(),
            "component" => event.component = Some(text()),
            "group" => event.group = Some(text()),
            "class" => event.class = Some(text()),
            "details" => {
                event.details = to_json(value);
                ctx.masker.mask_json(&mut event.details);
            }
            other => {
                return Err(format!(
                    "unknown key `{other}` (known: summary, severity, source, dedup_key, action, component, group, class, details)"
                ));
            }
        }
    }
    if event.dedup_key.is_empty() {
        if event.action != "trigger" {
            return Err(format!(
                "`{}` needs the `dedup_key` of the incident",
                event.action
            ));
        }
        event.dedup_key = dedup_key(ctx, &["pagerduty", &event.summary, &event.source]);
    }
    Ok(event)
}

fn send_email(ctx: &RunContext, letter: &Map) -> Outcome<Map> {
    if ctx.is_plan() {
        return Ok(planned());
    }
    let failed = |f| fail(ctx, "alert::email", f);
    let settings = AlertSettings::load(ctx).map_err(failed)?;
    let mut email: EmailSettings = settings.settings_of("email").map_err(failed)?;
    email.ca_cert = email.ca_cert.map(|path| super::settings::path(ctx, path));
    let mut to = email.to.clone();
    let mut subject = None;
    let mut body = None;
    let mut key = None;
    for (name, value) in letter {
        match name.as_str() {
            "to" => to = addresses(value).map_err(|m| format!("alert::email: {m}"))?,
            "subject" => subject = Some(ctx.masker.mask(&value.to_string())),
            "body" => body = Some(ctx.masker.mask(&value.to_string())),
            "dedup_key" => key = Some(value.to_string()),
            other => {
                return Err(format!(
                    "alert::email: unknown key `{other}` (known: to, subject, body, dedup_key)"
                )
                .into());
            }
        }
    }
    let subject = subject.ok_or("alert::email: the letter needs a `subject`")?;
    let body = body.unwrap_or_default();
    let key = key.unwrap_or_else(|| dedup_key(ctx, &["email", &subject, &body]));
    let password = match email.password.as_deref() {
        Some(reference) => Some(reveal(ctx, "email", "password", Some(reference))?),
        None => None,
    };
    let message = Letter {
        to: &to,
        subject: &subject,
        body: &body,
        dedup_key: &key,
    };
    let request = Email::new(&email, password, &message).map_err(failed)?;
    Delivery {
        name: "alert::email",
        target: email.host.clone().unwrap_or_default(),
        args: json!({ "to": to, "subject": subject, "dedup_key": key }),
        request: Request::Email(Box::new(request)),
        dedup_key: key,
        retry: settings.retry().map_err(failed)?,
    }
    .send(ctx)
}

fn addresses(value: &Dynamic) -> Result<Vec<String>, String> {
    if value.is_string() {
        return Ok(vec![value.to_string()]);
    }
    let list = value
        .clone()
        .try_cast::<Array>()
        .ok_or("`to` takes an address or an array of addresses")?;
    Ok(list.iter().map(|a| a.to_string()).collect())
}

fn webhook(ctx: &RunContext, url: Dynamic, payload: Dynamic) -> Outcome<Map> {
    if ctx.is_plan() {
        return Ok(planned());
    }
    let failed = |f| fail(ctx, "alert::webhook", f);
    let settings = AlertSettings::load(ctx).map_err(failed)?;
    let url = secret_or_text(ctx, url, "url").map_err(|m| format!("alert::webhook: {m}"))?;
    let url = secret_url(ctx, url).map_err(failed)?;
    let mut body = to_json(&payload);
    ctx.masker.mask_json(&mut body);
    let key = dedup_key(ctx, &["webhook", &body.to_string()]);
    Delivery {
        name: "alert::webhook",
        target: url.host_str().unwrap_or("webhook").to_owned(),
        args: json!({ "payload": body, "dedup_key": key }),
        request: Request::Http {
            receiver: Receiver::Webhook,
            url,
            body,
        },
        dedup_key: key,
        retry: settings.retry().map_err(failed)?,
    }
    .send(ctx)
}
