//! One alert to one receiver: sent through `Call::run` (so a dry run records it and sends
//! nothing), tried again on transient failures with the same dedup key each time, and each
//! attempt's trouble written to the transcript.

use std::time::Duration;

use reqwest::{StatusCode, Url};
use rhai::{Dynamic, Map};
use serde_json::{Value, json};

use super::email::Email;
use crate::bindings::secure_http;
use crate::engine::binding::{Call, Failure};
use crate::engine::context::RunContext;
use crate::engine::convert::from_json;
use crate::transcript::event::{Effect, LogLevel};

type Outcome<T> = Result<T, Box<rhai::EvalAltResult>>;

/// The longest pause between attempts, whatever a server's `Retry-After` asks for.
const MAX_WAIT: Duration = Duration::from_secs(30);

/// How often and how patiently to try.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts after the first.
    pub retries: u32,
    /// Pause before the first retry; doubled each time.
    pub delay: Duration,
    /// Limit for one attempt.
    pub timeout: Duration,
}

/// Which receiver's answer format to expect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receiver {
    Slack,
    PagerDuty,
    Webhook,
}

/// What to send.
pub enum Request {
    Http {
        receiver: Receiver,
        url: Url,
        body: Value,
    },
    Email(Box<Email>),
}

/// One message to one receiver, ready to go.
pub struct Delivery {
    /// The binding name the transcript shows (`alert::notify`, `alert::slack`, ...).
    pub name: &'static str,
    /// What it goes to, safe to show (`oncall/pagerduty`, a host name).
    pub target: String,
    /// What the transcript records about it; no secrets.
    pub args: Value,
    pub request: Request,
    pub dedup_key: String,
    pub retry: Retry,
}

/// Why one attempt did not get through.
enum Trouble {
    /// Worth another try (5xx, 429, no connection, no answer); `wait` is the server's own
    /// `Retry-After`.
    Transient {
        failure: Failure,
        wait: Option<Duration>,
    },
    Permanent(Failure),
}

impl Delivery {
    /// Sends it (unless the run is a dry run) and returns `#{ok, attempts, dedup_key, ...}`.
    pub fn send(self, ctx: &RunContext) -> Outcome<Map> {
        let dedup_key = self.dedup_key.clone();
        let planned_key = dedup_key.clone();
        let name = self.name;
        let retry = self.retry;
        let request = self.request;
        let answer = Call::new(ctx, name, Effect::Notify, self.target)
            .args(self.args)
            .run(
                move || json!({ "planned": true, "dedup_key": planned_key, "attempts": 0 }),
                async move { attempts(ctx, name, retry, &request, &dedup_key).await },
            )?;
        Ok(result_map(&answer))
    }
}

/// The script's view of a send: `ok` says nothing failed; a dry run's also says `planned`.
fn result_map(answer: &Value) -> Map {
    let mut map = Map::new();
    map.insert("ok".into(), true.into());
    if answer["planned"] == Value::Bool(true) {
        map.insert("planned".into(), true.into());
    }
    for key in ["attempts", "dedup_key", "status"] {
        if !answer[key].is_null() {
            map.insert(key.into(), from_json(&answer[key]));
        }
    }
    map
}

/// Tries until it works, a failure is permanent, or the retries are used up.
async fn attempts(
    ctx: &RunContext,
    name: &str,
    retry: Retry,
    request: &Request,
    dedup_key: &str,
) -> Result<Value, Failure> {
    let total = retry.retries + 1;
    let mut delay = retry.delay;
    for attempt in 1..=total {
        let trouble = match once(request, dedup_key, retry.timeout).await {
            Ok(mut answer) => {
                answer["attempts"] = Value::from(attempt);
                if answer["dedup_key"].is_null() {
                    answer["dedup_key"] = Value::String(dedup_key.to_owned());
                }
                return Ok(answer);
            }
            Err(trouble) => trouble,
        };
        let (failure, wait) = match trouble {
            Trouble::Permanent(failure) => return Err(failure),
            Trouble::Transient { failure, wait } => (failure, wait),
        };
        if attempt == total {
            let message = format!("{} (after {total} attempts)", failure.message);
            return Err(Failure {
                message,
                causes: failure.causes,
            });
        }
        let pause = wait.unwrap_or(delay).min(MAX_WAIT);
        let _ = crate::engine::core::log(
            ctx,
            LogLevel::Warn,
            format!(
                "{name}: attempt {attempt} of {total} failed ({}); trying again in {:.1} s with dedup key {dedup_key}",
                failure.message,
                pause.as_secs_f64()
            ),
        );
        tokio::time::sleep(pause).await;
        delay = delay.saturating_mul(2);
    }
    Err(Failure::new("no attempt was made"))
}

/// One attempt.
async fn once(request: &Request, dedup_key: &str, timeout: Duration) -> Result<Value, Trouble> {
    match request {
        Request::Http {
            receiver,
            url,
            body,
        } => post(*receiver, url, body, dedup_key, timeout).await,
        Request::Email(email) => email
            .send(timeout)
            .await
            .map(|()| json!({ "status": 250 }))
            .map_err(|(failure, transient)| match transient {
                true => Trouble::Transient {
                    failure,
                    wait: None,
                },
                false => Trouble::Permanent(failure),
            }),
    }
}

async fn post(
    receiver: Receiver,
    url: &Url,
    body: &Value,
    dedup_key: &str,
    timeout: Duration,
) -> Result<Value, Trouble> {
    let client = secure_http::client(None, timeout).map_err(Trouble::Permanent)?;
    let response = client
        .post(url.clone())
        .header("Idempotency-Key", dedup_key)
        .json(body)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(err) => {
            let transient = secure_http::is_transient_error(&err);
            let failure = secure_http::send_failed(receiver.label(), err);
            return Err(match transient {
                true => Trouble::Transient {
                    failure,
                    wait: None,
                },
                false => Trouble::Permanent(failure),
            });
        }
    };
    let status = response.status();
    let wait = retry_after(&response);
    let text = response.text().await.unwrap_or_default();
    if status.is_success() {
        return Ok(receiver.answer(status, &text));
    }
    let failure = Failure::new(format!(
        "{} answered {status}: {}",
        receiver.label(),
        receiver.complaint(&text)
    ));
    if secure_http::is_transient_status(status) {
        return Err(Trouble::Transient { failure, wait });
    }
    Err(Trouble::Permanent(failure))
}

/// `Retry-After` in seconds; the HTTP-date form is rare from these services and ignored.
fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?;
    let seconds: u64 = value.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

impl Receiver {
    fn label(self) -> &'static str {
        match self {
            Receiver::Slack => "Slack",
            Receiver::PagerDuty => "PagerDuty",
            Receiver::Webhook => "the webhook",
        }
    }

    /// What a successful answer says, for the script.
    fn answer(self, status: StatusCode, text: &str) -> Value {
        let mut answer = json!({ "status": status.as_u16() });
        if self == Receiver::PagerDuty {
            let body: Value = serde_json::from_str(text).unwrap_or(Value::Null);
            answer["dedup_key"] = body["dedup_key"].clone();
        }
        answer
    }

    /// The reason a receiver gave for refusing, from its own answer format.
    fn complaint(self, text: &str) -> String {
        if self == Receiver::PagerDuty
            && let Ok(body) = serde_json::from_str::<Value>(text)
        {
            let message = body["message"].as_str().unwrap_or("refused").to_owned();
            let errors: Vec<String> = body["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect();
            if errors.is_empty() {
                return message;
            }
            return format!("{message}: {}", errors.join("; "));
        }
        match secure_http::excerpt(text) {
            empty if empty.is_empty() => "no reason given".to_owned(),
            text => text,
        }
    }
}

/// A result's `ok`, for route summaries.
pub fn succeeded(result: &Map) -> bool {
    result
        .get("ok")
        .and_then(|ok| ok.as_bool().ok())
        .unwrap_or(false)
}

/// The map for one channel in a route's summary.
pub fn channel_entry(channel: &str, result: Result<Map, String>) -> Dynamic {
    let mut entry = match result {
        Ok(map) => map,
        Err(error) => {
            let mut map = Map::new();
            map.insert("ok".into(), false.into());
            map.insert("error".into(), error.into());
            map
        }
    };
    entry.insert("channel".into(), channel.into());
    entry.into()
}
