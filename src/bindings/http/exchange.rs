//! Sending a request: one client per trust setting, redirects followed by hand so the chain
//! can be reported and credentials never follow a redirect to another origin, opt-in retries
//! with backoff, and a deadline on every attempt.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::{Method, StatusCode, Url};

use super::error::{self, NetError};
use super::response::{HttpResponse, ResponseData};
use super::spec::{self, Body, RequestSpec};
use crate::bindings::tls::trust;
use crate::engine::binding::Failure;
use crate::engine::context::RunContext;
use crate::transcript::event::{Event, LogLevel};

/// Bodies longer than this are cut, so one large download cannot exhaust memory.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Clients by (CA bundle, connect timeout), reused across calls for their connection pools.
#[derive(Default)]
pub struct Clients {
    clients: Mutex<HashMap<(Option<PathBuf>, Duration), reqwest::Client>>,
}

impl Clients {
    fn get(&self, ctx: &RunContext, spec: &RequestSpec) -> Result<reqwest::Client, Failure> {
        let key = (spec.ca.clone(), spec.connect_timeout);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client.clone());
        }
        mask_proxy_credentials(ctx);
        let tls = trust::client_config(spec.ca.as_deref(), &[b"h2", b"http/1.1"])?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(spec.connect_timeout)
            .user_agent(concat!("runbook/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|err| Failure::from_error("cannot build the HTTP client", &err))?;
        clients.insert(key, client.clone());
        Ok(client)
    }
}

/// Proxy URLs from the environment may carry a password; it must not reach any output.
fn mask_proxy_credentials(ctx: &RunContext) {
    for name in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        if let Some(password) = std::env::var(name)
            .ok()
            .and_then(|v| Url::parse(&v).ok())
            .and_then(|u| u.password().map(str::to_owned))
        {
            ctx.masker.add(&password);
        }
    }
}

/// Sends `spec`, retrying as it allows, and returns the final response.
pub async fn send(
    ctx: Arc<RunContext>,
    clients: Arc<Clients>,
    spec: RequestSpec,
    step: Option<u64>,
) -> Result<HttpResponse, Failure> {
    let client = clients.get(&ctx, &spec)?;
    let mut attempt = 0;
    loop {
        let result = tokio::time::timeout(spec.timeout, exchange(&client, &spec)).await;
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::from(NetError::TimedOut {
                address: spec.address(),
                secs: spec.timeout.as_secs_f64(),
            })),
        };
        let retry_because = match &outcome {
            Ok(response) if retryable_status(response.data().status) => {
                Some(format!("answered {}", response.data().status))
            }
            Ok(_) => None,
            Err(failure) => Some(failure.message.clone()),
        };
        match retry_because {
            Some(why) if attempt < spec.retries => {
                attempt += 1;
                let pause = backoff(attempt);
                note_retry(&ctx, &spec, step, attempt, &why, pause);
                tokio::time::sleep(pause).await;
            }
            _ => return outcome,
        }
    }
}

/// Gateway errors are worth another try; a 429 is an answer, and rate-limit checks need it.
fn retryable_status(status: u16) -> bool {
    matches!(status, 502..=504)
}

/// Exponential backoff from 250 ms, capped at 8 s, with jitter over its upper half so that
/// many clients retrying do not arrive together.
fn backoff(attempt: u32) -> Duration {
    let base = 250_u64.saturating_mul(1 << attempt.min(5)).min(8_000);
    let jitter = getrandom::u64().unwrap_or(0) % (base / 2 + 1);
    Duration::from_millis(base / 2 + jitter)
}

fn note_retry(
    ctx: &RunContext,
    spec: &RequestSpec,
    step: Option<u64>,
    attempt: u32,
    why: &str,
    pause: Duration,
) {
    let message = format!(
        "{} {}: attempt {attempt} of {} {why}; retrying in {:.1} s",
        spec.method,
        spec.target(),
        spec.retries + 1,
        pause.as_secs_f64()
    );
    let _ = ctx.record(
        Event::Log {
            step,
            level: LogLevel::Warn,
            message: ctx.masker.mask(&message),
        },
        false,
    );
}

/// One attempt: the request and the redirects it leads to.
async fn exchange(client: &reqwest::Client, spec: &RequestSpec) -> Result<HttpResponse, Failure> {
    let started = Instant::now();
    let mut url = with_query(spec);
    let mut method = spec.method.clone();
    let mut body = spec.body.clone();
    let mut headers = spec.headers.clone();
    let mut redirects = Vec::new();
    loop {
        let address = spec::address(&url);
        let request = build(client, &method, &url, &headers, &body)?;
        let response = request
            .send()
            .await
            .map_err(|err| error::request_failure(&address, spec.connect_timeout, &err))?;
        let status = response.status();
        let location = redirect_target(&url, &response);
        if let (true, Some(next)) = (spec.follow_redirects && status.is_redirection(), location) {
            if redirects.len() as u32 >= spec.max_redirects {
                return Err(Failure::new(format!(
                    "more than {} redirects, the last from {}",
                    spec.max_redirects,
                    spec::shown_url(&url)
                )));
            }
            tracing::debug!(
                from = %spec::shown_url(&url),
                to = %spec::shown_url(&next),
                status = status.as_u16(),
                "following a redirect"
            );
            redirects.push((status.as_u16(), spec::shown_url(&url)));
            if next.origin() != url.origin() {
                // Credentials were given for one origin; a redirect must not carry them to another.
                headers.retain(|h| !h.value.secret);
            }
            if status == StatusCode::SEE_OTHER
                || (matches!(status.as_u16(), 301 | 302) && method == Method::POST)
            {
                method = Method::GET;
                body = Body::Empty;
            }
            url = next;
            continue;
        }
        return read(response, &method, redirects, started, &address).await;
    }
}

fn with_query(spec: &RequestSpec) -> Url {
    let mut url = spec.url.clone();
    if !spec.query.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (name, value) in &spec.query {
            pairs.append_pair(name, &value.value);
        }
    }
    url
}

fn build(
    client: &reqwest::Client,
    method: &Method,
    url: &Url,
    headers: &[crate::bindings::options::Header],
    body: &Body,
) -> Result<reqwest::RequestBuilder, Failure> {
    let mut request = client.request(method.clone(), url.clone());
    for header in headers {
        let name = HeaderName::from_bytes(header.name.as_bytes())
            .map_err(|_| Failure::new(format!("`{}` is not a header name", header.name)))?;
        let mut value = HeaderValue::from_str(&header.value.value).map_err(|_| {
            Failure::new(format!(
                "the value of header `{}` holds characters a header cannot",
                header.name
            ))
        })?;
        value.set_sensitive(header.value.secret);
        request = request.header(name, value);
    }
    if let Body::Bytes(bytes, content_type) = body {
        let typed = headers
            .iter()
            .any(|h| h.name.eq_ignore_ascii_case("content-type"));
        if let (Some(kind), false) = (content_type, typed) {
            request = request.header(reqwest::header::CONTENT_TYPE, *kind);
        }
        request = request.body(bytes.clone());
    }
    Ok(request)
}

fn version_name(version: reqwest::Version) -> String {
    match version {
        reqwest::Version::HTTP_09 => "HTTP/0.9".to_owned(),
        reqwest::Version::HTTP_10 => "HTTP/1.0".to_owned(),
        reqwest::Version::HTTP_11 => "HTTP/1.1".to_owned(),
        reqwest::Version::HTTP_2 => "HTTP/2".to_owned(),
        reqwest::Version::HTTP_3 => "HTTP/3".to_owned(),
        other => format!("{other:?}"),
    }
}

fn redirect_target(url: &Url, response: &reqwest::Response) -> Option<Url> {
    let location = response.headers().get(reqwest::header::LOCATION)?;
    url.join(location.to_str().ok()?).ok()
}

async fn read(
    mut response: reqwest::Response,
    method: &Method,
    redirects: Vec<(u16, String)>,
    started: Instant,
    address: &str,
) -> Result<HttpResponse, Failure> {
    let status = response.status().as_u16();
    let version = version_name(response.version());
    let url = spec::shown_url(response.url());
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| {
            let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), text)
        })
        .collect();
    let mut body = Vec::new();
    let mut truncated = false;
    // A HEAD answer has no body, whatever its Content-Length says; reading one fails on HTTP/2.
    while *method != Method::HEAD
        && let Some(chunk) = response
            .chunk()
            .await
            .map_err(|err| error::request_failure(address, Duration::ZERO, &err))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            body.extend_from_slice(&chunk[..MAX_BODY - body.len()]);
            truncated = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(HttpResponse::new(ResponseData {
        method: method.to_string(),
        status,
        headers,
        text: String::from_utf8_lossy(&body).into_owned(),
        truncated,
        elapsed_ms: started.elapsed().as_millis() as u64,
        url,
        redirects,
        version,
        error: String::new(),
        planned: false,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_bounded() {
        for attempt in 1..20 {
            let pause = backoff(attempt);
            let base = 250_u64.saturating_mul(1 << attempt.min(5)).min(8_000);
            assert!(
                pause >= Duration::from_millis(base / 2),
                "{attempt}: {pause:?}"
            );
            assert!(pause <= Duration::from_millis(base), "{attempt}: {pause:?}");
        }
    }
}
