//! `alert::notify` and `alert::test`: one alert down every channel of a named route, each
//! channel its own call in the transcript; a dry run records them and sends nothing.

use rhai::{Array, Dynamic, Map};
use serde_json::{Value, json};

use super::deliver::{Delivery, Receiver, Request, channel_entry, succeeded};
use super::email::{Email, EmailSettings, Letter};
use super::route::{self, AlertSettings, Channel, PagerDutyEvent, PagerDutySettings};
use super::{Outcome, dedup_key, fail, host, pagerduty_url, planned, reveal, secret_url};
use crate::engine::context::RunContext;
use crate::engine::convert::to_json;
use crate::engine::signal;
use crate::transcript::event::LogLevel;

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
pub fn notify(ctx: &RunContext, route: &str, message: &str, options: &Map) -> Outcome<Map> {
    let alert = parse_alert(message, options).map_err(|m| format!("alert::notify: {m}"))?;
    send_route(ctx, route, &alert, false)
}

pub fn test(ctx: &RunContext, route: &str) -> Outcome<Map> {
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
    let to = Destination {
        ctx,
        route,
        channel,
        alert,
        key,
        subject: format!("{name} on {route}/{channel}"),
    };
    let found = settings.channel(channel).map_err(|f| to.failed(f))?;
    let kind = found.kind();
    let request = match found {
        Channel::Slack(slack) => to.slack(&slack)?,
        Channel::PagerDuty(pagerduty) => to.pagerduty(&pagerduty)?,
        Channel::Email(email) => to.email(email)?,
        Channel::Webhook(hook) => to.webhook(hook.url.as_deref())?,
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

/// Where one alert of a route goes, while its request is built.
struct Destination<'a> {
    ctx: &'a RunContext,
    route: &'a str,
    channel: &'a str,
    alert: &'a Alert,
    key: &'a str,
    /// `alert::notify on ROUTE/CHANNEL`, the start of every error.
    subject: String,
}

impl Destination<'_> {
    fn failed(&self, failure: crate::engine::binding::Failure) -> Box<rhai::EvalAltResult> {
        fail(self.ctx, &self.subject, failure)
    }

    fn secret(&self, field: &str, reference: Option<&str>) -> Outcome<crate::secret::Secret> {
        reveal(self.ctx, self.channel, field, reference)
    }

    fn slack(&self, slack: &route::SlackSettings) -> Outcome<Request> {
        let webhook = self.secret("webhook", slack.webhook.as_deref())?;
        Ok(Request::Http {
            receiver: Receiver::Slack,
            url: secret_url(self.ctx, webhook).map_err(|f| self.failed(f))?,
            body: route::slack_body(slack, &decorated(self.alert), None),
        })
    }

    fn pagerduty(&self, pagerduty: &PagerDutySettings) -> Outcome<Request> {
        let routing_key = self.secret("routing_key", pagerduty.routing_key.as_deref())?;
        let event = route_event(pagerduty, self.alert, self.key);
        event.check().map_err(|f| self.failed(f))?;
        Ok(Request::Http {
            receiver: Receiver::PagerDuty,
            url: pagerduty_url(pagerduty).map_err(|f| self.failed(f))?,
            body: event.body(routing_key.expose()),
        })
    }

    fn email(&self, mut email: EmailSettings) -> Outcome<Request> {
        email.ca_cert = email
            .ca_cert
            .map(|path| crate::bindings::settings::path(self.ctx, path));
        let password = match email.password.as_deref() {
            Some(reference) => Some(self.secret("password", Some(reference))?),
            None => None,
        };
        let subject = subject_of(self.alert);
        let body = email_body(self.ctx, self.alert, self.key);
        let letter = Letter {
            to: &email.to,
            subject: &subject,
            body: &body,
            dedup_key: self.key,
        };
        let message = Email::new(&email, password, &letter).map_err(|f| self.failed(f))?;
        Ok(Request::Email(Box::new(message)))
    }

    fn webhook(&self, url: Option<&str>) -> Outcome<Request> {
        let url = self.secret("url", url)?;
        Ok(Request::Http {
            receiver: Receiver::Webhook,
            url: secret_url(self.ctx, url).map_err(|f| self.failed(f))?,
            body: webhook_body(self.ctx, self.route, self.alert, self.key),
        })
    }
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
