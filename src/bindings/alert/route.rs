//! Alert settings from runbook.toml: `[alert.routes]` names lists of channels; a channel is a
//! table `[alert.NAME]` whose kind is its `type` or, failing that, its name. Webhook URLs,
//! routing keys and passwords in it are secret references, never the secrets themselves.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::deliver::Retry;
use super::email::EmailSettings;
use crate::engine::binding::Failure;
use crate::engine::context::RunContext;

/// Where PagerDuty's Events API v2 takes events unless `[alert.pagerduty] url` says otherwise.
pub const PAGERDUTY_EVENTS: &str = "https://events.pagerduty.com/v2/enqueue";

/// The kinds of channel, as `type` names them.
const KINDS: &str = "slack, pagerduty, email, webhook";

/// `[alert]`.
#[derive(Debug, Default, Deserialize)]
pub struct AlertSettings {
    #[serde(default)]
    pub routes: BTreeMap<String, Vec<String>>,
    /// Attempts after the first one, for transient failures (default 3).
    pub retries: Option<u32>,
    /// Seconds before the first retry, doubled each time (default 0.5).
    pub retry_delay: Option<f64>,
    /// Seconds one attempt may take (default 10).
    pub timeout: Option<f64>,
    /// Every other table is a channel.
    #[serde(flatten)]
    pub channels: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackSettings {
    /// A secret reference to the incoming-webhook URL.
    pub webhook: Option<String>,
    pub channel: Option<String>,
    pub username: Option<String>,
    pub icon_emoji: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutySettings {
    /// A secret reference to the integration's routing key.
    pub routing_key: Option<String>,
    /// The Events API v2 endpoint (tests point it at a local receiver).
    pub url: Option<String>,
    /// Severity when the alert names none: critical, error (the default), warning or info.
    pub severity: Option<String>,
    /// The affected system, shown in the incident (default: this machine's name).
    pub source: Option<String>,
    pub component: Option<String>,
    pub group: Option<String>,
    pub class: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// A secret reference to the URL.
    pub url: Option<String>,
}

/// One configured channel.
pub enum Channel {
    Slack(SlackSettings),
    PagerDuty(PagerDutySettings),
    Email(EmailSettings),
    Webhook(WebhookSettings),
}

impl Channel {
    pub fn kind(&self) -> &'static str {
        match self {
            Channel::Slack(_) => "slack",
            Channel::PagerDuty(_) => "pagerduty",
            Channel::Email(_) => "email",
            Channel::Webhook(_) => "webhook",
        }
    }
}

impl AlertSettings {
    pub fn load(ctx: &RunContext) -> Result<Self, Failure> {
        crate::bindings::settings::read(ctx, "alert")
    }

    pub fn retry(&self) -> Result<Retry, Failure> {
        let seconds = |value: Option<f64>, default: f64, key: &str| {
            Duration::try_from_secs_f64(value.unwrap_or(default))
                .map_err(|_| Failure::new(format!("[alert] {key} must be a positive number")))
        };
        Ok(Retry {
            retries: self.retries.unwrap_or(3),
            delay: seconds(self.retry_delay, 0.5, "retry_delay")?,
            timeout: seconds(self.timeout, 10.0, "timeout")?,
        })
    }

    /// The channels of a route, in order.
    pub fn route(&self, name: &str) -> Result<&[String], Failure> {
        let channels = self.routes.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.routes.keys().map(String::as_str).collect();
            Failure::new(match known.is_empty() {
                true => format!("no route `{name}`: runbook.toml has no [alert.routes]"),
                false => format!(
                    "no route `{name}` in [alert.routes] (known: {})",
                    known.join(", ")
                ),
            })
        })?;
        if channels.is_empty() {
            return Err(Failure::new(format!("route `{name}` lists no channels")));
        }
        Ok(channels)
    }

    /// The channel `[alert.NAME]`.
    pub fn channel(&self, name: &str) -> Result<Channel, Failure> {
        let table = match self.channels.get(name) {
            Some(toml::Value::Table(table)) => table,
            Some(_) => return Err(Failure::new(format!("[alert] {name} must be a table"))),
            None => {
                return Err(Failure::new(format!(
                    "no settings for the channel `{name}`: add an [alert.{name}] table"
                )));
            }
        };
        let kind = table
            .get("type")
            .and_then(toml::Value::as_str)
            .unwrap_or(name);
        let channel = match kind {
            "slack" => Channel::Slack(parse(name, table)?),
            "pagerduty" => Channel::PagerDuty(parse(name, table)?),
            "email" => Channel::Email(parse(name, table)?),
            "webhook" => Channel::Webhook(parse(name, table)?),
            other if table.contains_key("type") => {
                return Err(Failure::new(format!(
                    "[alert.{name}] has unknown type `{other}` (known: {KINDS})"
                )));
            }
            _ => {
                return Err(Failure::new(format!(
                    "[alert.{name}] needs `type = \"...\"` ({KINDS})"
                )));
            }
        };
        Ok(channel)
    }

    /// `[alert.NAME]` read as a channel of a known kind, or its defaults when absent; for the
    /// direct functions (`alert::pagerduty` reads `[alert.pagerduty]`).
    pub fn settings_of<T: DeserializeOwned + Default>(&self, name: &str) -> Result<T, Failure> {
        match self.channels.get(name) {
            Some(toml::Value::Table(table)) => parse(name, table),
            Some(_) => Err(Failure::new(format!("[alert] {name} must be a table"))),
            None => Ok(T::default()),
        }
    }
}

/// A channel's table as its kind's settings; `type` has been read already.
fn parse<T: DeserializeOwned>(name: &str, table: &toml::Table) -> Result<T, Failure> {
    let mut table = table.clone();
    table.remove("type");
    toml::Value::Table(table)
        .try_into()
        .map_err(|err: toml::de::Error| {
            Failure::new(format!("[alert.{name}]: {}", err.message().trim_end()))
        })
}

/// The severities and actions PagerDuty's Events API v2 knows.
pub const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];
pub const ACTIONS: [&str; 3] = ["trigger", "acknowledge", "resolve"];

/// One PagerDuty event, checked.
#[derive(Debug, Clone, Default)]
pub struct PagerDutyEvent {
    pub action: String,
    pub dedup_key: String,
    pub summary: String,
    pub severity: String,
    pub source: String,
    pub component: Option<String>,
    pub group: Option<String>,
    pub class: Option<String>,
    pub details: Value,
}

impl PagerDutyEvent {
    pub fn check(&self) -> Result<(), Failure> {
        if !ACTIONS.contains(&self.action.as_str()) {
            return Err(Failure::new(format!(
                "unknown action `{}` ({})",
                self.action,
                ACTIONS.join(", ")
            )));
        }
        if !SEVERITIES.contains(&self.severity.as_str()) {
            return Err(Failure::new(format!(
                "unknown severity `{}` ({})",
                self.severity,
                SEVERITIES.join(", ")
            )));
        }
        if self.action == "trigger" && self.summary.trim().is_empty() {
            return Err(Failure::new("a trigger needs a `summary`"));
        }
        Ok(())
    }

    /// The Events API v2 body. Acknowledge and resolve carry only the key of the incident.
    pub fn body(&self, routing_key: &str) -> Value {
        let mut body = json!({
            "routing_key": routing_key,
            "event_action": self.action,
            "dedup_key": self.dedup_key,
            "client": "runbook",
        });
        if self.action != "trigger" {
            return body;
        }
        let mut payload = json!({
            "summary": truncate(&self.summary, 1024),
            "source": self.source,
            "severity": self.severity,
        });
        for (key, value) in [
            ("component", &self.component),
            ("group", &self.group),
            ("class", &self.class),
        ] {
            if let Some(value) = value {
                payload[key] = Value::String(value.clone());
            }
        }
        if !self.details.is_null() {
            payload["custom_details"] = self.details.clone();
        }
        body["payload"] = payload;
        body
    }
}

/// The Slack incoming-webhook body.
pub fn slack_body(settings: &SlackSettings, text: &str, blocks: Option<Value>) -> Value {
    let mut body = json!({ "text": text });
    if let Some(blocks) = blocks {
        body["blocks"] = blocks;
    }
    for (key, value) in [
        ("channel", &settings.channel),
        ("username", &settings.username),
        ("icon_emoji", &settings.icon_emoji),
    ] {
        if let Some(value) = value {
            body[key] = Value::String(value.clone());
        }
    }
    body
}

/// The first `limit` characters of `text`.
pub fn truncate(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((index, _)) => text[..index].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> AlertSettings {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn channels_are_found_by_name_or_type() {
        let alert = settings(
            r#"
            [routes]
            team = ["slack", "ops-hook"]
            [slack]
            webhook = "env:SLACK_WEBHOOK_URL"
            [ops-hook]
            type = "webhook"
            url = "env:OPS_HOOK"
            [mystery]
            url = "x"
            "#,
        );
        assert_eq!(alert.route("team").unwrap(), ["slack", "ops-hook"]);
        assert_eq!(alert.channel("slack").unwrap().kind(), "slack");
        assert_eq!(alert.channel("ops-hook").unwrap().kind(), "webhook");
        let err = alert.channel("mystery").err().unwrap().message;
        assert!(err.contains("needs `type"), "{err}");
        let err = alert.route("oncall").err().unwrap().message;
        assert!(err.contains("known: team"), "{err}");
        let err = alert.channel("email").err().unwrap().message;
        assert!(err.contains("add an [alert.email] table"), "{err}");
    }

    #[test]
    fn misspelt_settings_are_errors() {
        let alert = settings("[slack]\nwebhok = \"env:X\"");
        let err = alert.channel("slack").err().unwrap().message;
        assert!(
            err.contains("[alert.slack]") && err.contains("webhok"),
            "{err}"
        );
    }

    #[test]
    fn pagerduty_resolve_carries_only_the_key() {
        let mut event = PagerDutyEvent {
            action: "resolve".into(),
            dedup_key: "k1".into(),
            severity: "error".into(),
            ..Default::default()
        };
        event.check().unwrap();
        let body = event.body("rk");
        assert_eq!(body["event_action"], "resolve");
        assert!(body.get("payload").is_none());
        event.action = "trigger".into();
        assert!(event.check().is_err(), "a trigger without summary");
        event.summary = "x".repeat(2000);
        assert_eq!(
            event.body("rk")["payload"]["summary"]
                .as_str()
                .unwrap()
                .len(),
            1024
        );
        event.severity = "fatal".into();
        assert!(
            event
                .check()
                .unwrap_err()
                .message
                .contains("unknown severity")
        );
    }
}
