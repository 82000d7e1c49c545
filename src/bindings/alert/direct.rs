//! The direct senders (`alert::slack`, `alert::pagerduty`, `alert::email`,
//! `alert::webhook`): one message to one receiver the script names, with the same retries,
//! dedup keys and masking as routes.

use rhai::{Array, Dynamic, Map};
use serde_json::json;

use super::deliver::{Delivery, Receiver, Request};
use super::email::{Email, EmailSettings, Letter};
use super::route::{self, AlertSettings, PagerDutyEvent, PagerDutySettings, SlackSettings};
use super::{
    Outcome, dedup_key, fail, host, pagerduty_url, planned, reveal, secret_or_text, secret_url,
};
use crate::engine::context::RunContext;
use crate::engine::convert::to_json;

pub fn slack(ctx: &RunContext, webhook: Dynamic, message: &str, options: &Map) -> Outcome<Map> {
    if ctx.is_plan() {
        return Ok(planned());
    }
    let settings = AlertSettings::load(ctx).map_err(|f| fail(ctx, "alert::slack", f))?;
    let webhook =
        secret_or_text(ctx, webhook, "webhook").map_err(|m| format!("alert::slack: {m}"))?;
    let url = secret_url(ctx, webhook).map_err(|f| fail(ctx, "alert::slack", f))?;
    let (slack, blocks, key) =
        slack_options(ctx, options).map_err(|m| format!("alert::slack: {m}"))?;
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

/// The settings, blocks (masked) and dedup key an `alert::slack` call gives.
fn slack_options(
    ctx: &RunContext,
    options: &Map,
) -> Result<(SlackSettings, Option<serde_json::Value>, Option<String>), String> {
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
                    "unknown option `{other}` (known: blocks, channel, username, icon_emoji, dedup_key)"
                ));
            }
        }
    }
    Ok((slack, blocks, key))
}

pub fn pagerduty(ctx: &RunContext, routing_key: Dynamic, options: &Map) -> Outcome<Map> {
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

pub fn email(ctx: &RunContext, letter: &Map) -> Outcome<Map> {
    if ctx.is_plan() {
        return Ok(planned());
    }
    let failed = |f| fail(ctx, "alert::email", f);
    let settings = AlertSettings::load(ctx).map_err(failed)?;
    let mut email: EmailSettings = settings.settings_of("email").map_err(failed)?;
    email.ca_cert = email
        .ca_cert
        .map(|path| crate::bindings::settings::path(ctx, path));
    let (to, subject, body, key) =
        letter_parts(ctx, &email, letter).map_err(|m| format!("alert::email: {m}"))?;
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

/// Recipients, subject, body (masked) and dedup key of an `alert::email` letter.
fn letter_parts(
    ctx: &RunContext,
    email: &EmailSettings,
    letter: &Map,
) -> Result<(Vec<String>, String, String, String), String> {
    let mut to = email.to.clone();
    let mut subject = None;
    let mut body = None;
    let mut key = None;
    for (name, value) in letter {
        match name.as_str() {
            "to" => to = addresses(value)?,
            "subject" => subject = Some(ctx.masker.mask(&value.to_string())),
            "body" => body = Some(ctx.masker.mask(&value.to_string())),
            "dedup_key" => key = Some(value.to_string()),
            other => {
                return Err(format!(
                    "unknown key `{other}` (known: to, subject, body, dedup_key)"
                ));
            }
        }
    }
    let subject = subject.ok_or("the letter needs a `subject`")?;
    let body = body.unwrap_or_default();
    let key = key.unwrap_or_else(|| dedup_key(ctx, &["email", &subject, &body]));
    Ok((to, subject, body, key))
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

pub fn webhook(ctx: &RunContext, url: Dynamic, payload: Dynamic) -> Outcome<Map> {
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
