//! The web bindings and `stdlib/web.rhai` against real servers on loopback: each check fails
//! on a bad target and passes on a good one, every binding ends at its deadline, and a secret
//! used as a bearer token reaches no output.

mod support;

use std::sync::OnceLock;
use std::sync::atomic::Ordering;

use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use support::pki::{Kind, Pki};
use support::runner::{Run, Workspace};
use support::servers;

fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(Pki::new)
}

fn workspace() -> Workspace {
    Workspace::new(&pki().root_pem)
}

fn assert_code(run: &Run, code: i32) {
    assert_eq!(run.code, code, "{}", run.screen());
}

fn assert_passed(run: &Run, title: &str) {
    assert_eq!(run.status(title), "passed", "{title}: {}", run.screen());
}

fn assert_failed_with(run: &Run, title: &str, text: &str) {
    let step = run.step(title);
    assert_eq!(step["status"], "failed", "{title}: {}", run.screen());
    let message = step["message"].as_str().unwrap_or_default();
    let findings = run.findings(title);
    assert!(
        message.contains(text) || findings.iter().any(|f| f.contains(text)),
        "{title}: expected `{text}` in {message:?} / {findings:?}"
    );
}

#[test]
fn security_headers_pass_when_hardened_and_name_each_weak_header() {
    let app = servers::https_app(pki(), Kind::Valid);
    let ws = workspace();
    let good = ws.run(&format!(
        "import \"web\" as web;\ncheck(\"Security headers\", || web::security_headers(\"{}\"));",
        app.url("/good")
    ));
    assert_code(&good, 0);
    assert_passed(&good, "Security headers");

    let bad = ws.run(&format!(
        "import \"web\" as web;\ncheck(\"Security headers\", || web::security_headers(\"{}\"));",
        app.url("/weak")
    ));
    assert_code(&bad, 1);
    for expected in [
        "Strict-Transport-Security max-age is 3600 s, under 15552000 s",
        "Content-Security-Policy allows 'unsafe-inline' scripts",
        "Content-Security-Policy allows * scripts",
        "X-Content-Type-Options is not nosniff",
        "no frame protection",
        "Referrer-Policy unsafe-url",
        "Server header reveals a version: nginx/1.18.0",
        "X-Powered-By reveals the stack: Express",
    ] {
        assert!(
            bad.has_finding("Security headers", expected),
            "{expected}: {:?}",
            bad.findings("Security headers")
        );
    }
    assert!(
        bad.screen().contains("Server header reveals a version"),
        "{}",
        bad.screen()
    );
}

#[test]
fn plain_http_must_redirect_to_https() {
    let https = servers::https_app(pki(), Kind::Valid);
    let redirector = servers::redirector(https.port);
    let plain = servers::http_app();
    let ws = workspace();
    let script = |url: String| {
        format!("import \"web\" as web;\ncheck(\"HTTPS only\", || web::https_redirect(\"{url}\"));")
    };

    let good = ws.run(&script(format!("http://localhost:{redirector}/good")));
    assert_code(&good, 0);
    assert_passed(&good, "HTTPS only");

    let closed = ws.run(&script("http://127.0.0.1:1/".to_owned()));
    assert_code(&closed, 0);

    let bad = ws.run(&script(plain.url("/good")));
    assert_code(&bad, 1);
    assert_failed_with(
        &bad,
        "HTTPS only",
        "answered 200 over plain HTTP instead of redirecting to HTTPS",
    );
}

#[test]
fn cors_allows_configured_origins_and_refuses_foreign_ones() {
    let app = servers::https_app(pki(), Kind::Valid);
    let ws = workspace();
    let script = |path: &str, allowed: &str| {
        format!(
            "import \"web\" as web;\ncheck(\"CORS\", || web::cors(\"{}\", {allowed}, #{{method: \"PUT\"}}));",
            app.url(path)
        )
    };

    let good = ws.run(&script("/cors/strict", "[\"https://app.example.com\"]"));
    assert_code(&good, 0);
    assert_passed(&good, "CORS");

    let loose = ws.run(&script("/cors/loose", "[\"https://app.example.com\"]"));
    assert_code(&loose, 1);
    assert_failed_with(
        &loose,
        "CORS",
        "any origin is allowed (Access-Control-Allow-Origin: *)",
    );
    assert_failed_with(
        &loose,
        "CORS",
        "is sent with Access-Control-Allow-Credentials: true",
    );
    assert_failed_with(&loose, "CORS", "may not send PUT");

    let missing = ws.run(&script(
        "/cors/strict",
        "[\"https://app.example.com\", \"https://admin.example.com\"]",
    ));
    assert_code(&missing, 1);
    assert_failed_with(&missing, "CORS", "https://admin.example.com is not allowed");
    assert_eq!(
        missing.findings("CORS").len(),
        1,
        "{:?}",
        missing.findings("CORS")
    );
}

#[test]
fn protected_endpoints_must_refuse_missing_malformed_and_unsigned_tokens() {
    let app = servers::https_app(pki(), Kind::Valid);
    let ws = workspace();
    let script = |path: &str| {
        format!(
            "import \"web\" as web;\ncheck(\"Authentication\", || web::auth_required(\"{}\", #{{token: secret(\"SESSION\")}}));",
            app.url(path)
        )
    };
    let env = [("SESSION", "valid-session-token")];
    let good = ws.run_with(&script("/protected"), &[], &env);
    assert_code(&good, 0);
    assert_passed(&good, "Authentication");

    let bad = ws.run_with(&script("/careless"), &[], &env);
    assert_code(&bad, 1);
    assert_failed_with(
        &bad,
        "Authentication",
        "answered 200 to a request with a malformed token",
    );
    assert_failed_with(
        &bad,
        "Authentication",
        "answered 200 to a request with an unsigned (alg: none) token",
    );
    assert_eq!(
        bad.findings("Authentication").len(),
        2,
        "{:?}",
        bad.findings("Authentication")
    );

    let open = ws.run_with(&script("/open"), &[], &env);
    assert_code(&open, 1);
    assert_failed_with(
        &open,
        "Authentication",
        "answered 200 to a request with no credentials",
    );
}

#[test]
fn rate_limit_check_needs_429_with_retry_after() {
    let app = servers::https_app(pki(), Kind::Valid);
    let ws = workspace();
    let script = |path: &str| {
        format!(
            "import \"web\" as web;\ncheck(\"Rate limiting\", || web::rate_limit(\"{}\", #{{requests: 30}}));",
            app.url(path)
        )
    };

    let good = ws.run(&script("/limited"));
    assert_code(&good, 0);
    assert_passed(&good, "Rate limiting");
    assert_eq!(app.state.limited.load(Ordering::SeqCst), 30);

    let open = ws.run(&script("/open"));
    assert_code(&open, 1);
    assert_failed_with(
        &open,
        "Rate limiting",
        "none of 30 requests in a burst was answered 429 (200 × 30)",
    );

    let bare = ws.run(&script("/limited-bare"));
    assert_code(&bare, 1);
    assert_failed_with(
        &bare,
        "Rate limiting",
        "20 of 20 answers 429 have no Retry-After header",
    );
}

#[test]
fn certificate_check_names_each_bad_host_and_its_reason() {
    let valid = servers::https_app(pki(), Kind::Valid);
    let ws = workspace();
    let good = ws.run(&format!(
        "import \"web\" as web;\ncheck(\"Certificates\", || web::certificates([\"localhost:{}\", #{{host: \"127.0.0.1\", port: {}, server_name: \"web.test\"}}], 30));",
        valid.port, valid.port
    ));
    assert_code(&good, 0);
    assert_passed(&good, "Certificates");

    let bad_kinds = [
        (Kind::Expiring, "expires in 9 days"),
        (Kind::Expired, "certificate expired on"),
        (
            Kind::WrongHost,
            "certificate is not valid for localhost (it names other.test)",
        ),
        (
            Kind::SelfSigned,
            "self-signed certificate, not issued by a trusted authority",
        ),
        (
            Kind::MissingIntermediate,
            "the server sent no intermediate certificate",
        ),
    ];
    let apps: Vec<_> = bad_kinds
        .iter()
        .map(|(kind, _)| servers::https_app(pki(), *kind))
        .collect();
    let hosts: Vec<String> = apps
        .iter()
        .map(|a| format!("\"localhost:{}\"", a.port))
        .collect();
    let bad = ws.run(&format!(
        "import \"web\" as web;\ncheck(\"Certificates\", || web::certificates([{}], 30));",
        hosts.join(", ")
    ));
    assert_code(&bad, 1);
    let findings = bad.findings("Certificates");
    assert_eq!(findings.len(), bad_kinds.len(), "{findings:?}");
    for ((_, reason), app) in bad_kinds.iter().zip(&apps) {
        let host = format!("localhost:{}", app.port);
        assert!(
            findings
                .iter()
                .any(|f| f.starts_with(&host) && f.contains(reason)),
            "{host} {reason}: {findings:?}"
        );
    }
}

#[test]
fn tls_inspect_reports_the_chain_even_when_rejected() {
    let valid = servers::https_app(pki(), Kind::Valid);
    let expired = servers::https_app(pki(), Kind::Expired);
    let ws = workspace();
    let run = ws.run(&format!(
        r#"
let good = tls::inspect("localhost", {valid});
check("verified", || good.verified && good.reason == "");
check("protocol", || good.protocol == "TLS 1.3" && good.cipher.starts_with("TLS13_") && good.alpn == "");
check("chain", || good.chain.len() == 2 && good.chain[0].sans.contains("web.test") && good.chain[0].sans.contains("127.0.0.1") && good.chain[1].subject == "CN=Runbook Test Intermediate" && good.chain[0].issuer == "CN=Runbook Test Intermediate");
check("days left", || good.days_left >= 89 && good.days_left <= 90 && good.chain[0].not_after.ends_with("Z"));
let old = tls::inspect("127.0.0.1", {expired}, #{{server_name: "web.test"}});
check("expired reported", || !old.verified && old.reason.starts_with("certificate expired on") && old.chain[0].expired && old.days_left < 0);
let roots = tls::inspect_file("ca.pem");
check("pem file", || roots.len() == 1 && roots[0].self_signed && roots[0].ca && roots[0].subject == "CN=Runbook Test Root");
check("pem text", || tls::inspect_pem("no certificate here"));
"#,
        valid = valid.port,
        expired = expired.port
    ));
    assert_code(&run, 1);
    for title in [
        "verified",
        "protocol",
        "chain",
        "days left",
        "expired reported",
        "pem file",
    ] {
        assert_passed(&run, title);
    }
    assert_failed_with(&run, "pem text", "no certificate found");
}

#[test]
fn debug_mode_check_finds_stack_traces_and_debug_tools() {
    let app = servers::https_app(pki(), Kind::Valid);
    let ws = workspace();
    let script = |path: &str| {
        format!(
            "import \"web\" as web;\ncheck(\"Debug mode off\", || web::debug_mode_off(\"{}\"));",
            app.url(path)
        )
    };
    let good = ws.run(&script("/app"));
    assert_code(&good, 0);
    assert_passed(&good, "Debug mode off");

    let bad = ws.run(&script("/debugapp/"));
    assert_code(&bad, 1);
    assert_failed_with(
        &bad,
        "Debug mode off",
        "(500) shows a debug page or stack trace: \"Traceback (most recent call last)\"",
    );
    assert_failed_with(
        &bad,
        "Debug mode off",
        "/debugapp/console answered 200: a debug tool is reachable",
    );
}

#[test]
fn response_time_check_judges_the_95th_percentile() {
    let app = servers::https_app(pki(), Kind::Valid);
    let ws = workspace();
    let good = ws.run(&format!(
        "import \"web\" as web;\ncheck(\"Response times\", || web::response_time(\"{}\", 1000, #{{samples: 5}}));",
        app.url("/slow?ms=0")
    ));
    assert_code(&good, 0);
    assert_passed(&good, "Response times");

    let bad = ws.run(&format!(
        "import \"web\" as web;\ncheck(\"Response times\", || web::response_time([\"{}\", \"http://127.0.0.1:1/\"], 50, #{{samples: 5}}));",
        app.url("/slow?ms=150")
    ));
    assert_code(&bad, 1);
    assert_failed_with(&bad, "Response times", "over 5 requests, above 50 ms");
    assert_failed_with(
        &bad,
        "Response times",
        "http://127.0.0.1:1/: 5 of 5 requests failed or answered 5xx",
    );
}

#[test]
fn websocket_checks_pass_on_an_echo_and_fail_on_refusals() {
    let echo = servers::websocket(Some((pki(), Kind::Valid)), None);
    let limited = servers::websocket(None, Some(5));
    let refusing = servers::websocket(None, Some(0));
    let ws = workspace();
    let good = ws.run(&format!(
        r#"import "web" as web;
check("WebSocket", || web::websocket("wss://localhost:{echo}/market", #{{send: "ping", expect: "ping"}}));
check("WebSocket capacity", || web::websocket_capacity("wss://localhost:{echo}/market", 20, #{{max_p95_ms: 5000, hold_ms: 100}}));
"#
    ));
    assert_code(&good, 0);
    assert_passed(&good, "WebSocket");
    assert_passed(&good, "WebSocket capacity");

    let bad = ws.run(&format!(
        r#"import "web" as web;
check("WebSocket", || web::websocket("ws://127.0.0.1:{refusing}/market"));
check("WebSocket capacity", || web::websocket_capacity("ws://127.0.0.1:{limited}/market", 20, #{{hold_ms: 300}}));
check("WebSocket untrusted", || web::websocket("wss://localhost:{echo}/market", #{{ca: "missing.pem"}}));
"#
    ));
    assert_code(&bad, 1);
    assert_failed_with(
        &bad,
        "WebSocket",
        "answered 503 Service Unavailable instead of switching to WebSocket",
    );
    assert_failed_with(
        &bad,
        "WebSocket capacity",
        "15 of 20 WebSockets did not open: 15 × 127.0.0.1:",
    );
    assert_failed_with(&bad, "WebSocket untrusted", "cannot read CA bundle");
}

#[test]
fn ws_connections_send_receive_and_report_capacity() {
    let echo = servers::websocket(Some((pki(), Kind::Valid)), None);
    let ws = workspace();
    let run = ws.run(&format!(
        r#"
let socket = ws::connect("wss://localhost:{echo}/", #{{effect: "read"}});
socket.send("hello");
check("text echo", || socket.recv(5) == "hello");
socket.send(#{{action: "subscribe", symbols: ["AAPL"]}});
check("json echo", || socket.recv(5.0).contains("\"symbols\":[\"AAPL\"]"));
socket.close();
check("closed", || socket.recv(1));
let load = ws::capacity("wss://localhost:{echo}/", 10, #{{hold_ms: 50}});
check("capacity report", || load.requested == 10 && load.opened == 10 && load.failed == 0 && load.p50 <= load.p95 && load.p95 <= load.p99 && load.p99 <= load.max && load.max > 0);
"#
    ));
    assert_code(&run, 1);
    for title in ["text echo", "json echo", "capacity report"] {
        assert_passed(&run, title);
    }
    assert_failed_with(&run, "closed", "is closed");
}

#[test]
fn http_responses_report_redirects_version_headers_and_json() {
    let app = servers::https_app(pki(), Kind::Valid);
    let plain = servers::http_app();
    let ws = workspace();
    let run = ws.run_with(&format!(
        r#"
let r = http::get("{redirect}");
check("redirect followed", || r.status == 200 && r.ok && r.text == "fine" && r.redirects.len() == 1 && r.redirects[0].status == 302 && r.url.ends_with("/good"));
check("http2 over tls", || r.version == "HTTP/2");
let p = http::get("{json}");
check("http1 in the clear", || p.version == "HTTP/1.1");
check("lower-case headers", || p.headers["x-mixed-case"] == "yes" && p.header("X-Mixed-Case") == "yes" && p.header("x-absent") == ());
check("json body", || p.json().items.len() == 3 && p.json().status == "ok");
let stay = http::get("{redirect}", #{{follow_redirects: false}});
check("redirect kept", || stay.status == 302 && stay.header("location") == "/good" && stay.redirects.len() == 0);
check("head", || http::head("{good}").status == 200);
check("not json", || http::get("{good}").json());
let sent = http::request(#{{method: "PUT", url: "{echo}", query: #{{q: "a b", n: 2}}, json: #{{x: [1], pw: secret("PASSWORD")}}, headers: #{{"X-Custom": "v"}}}}).json();
check("request sent", || sent.method == "PUT" && sent.query == "n=2&q=a+b" && sent.body == `{{"pw":"pw-9c41e","x":[1]}}` && sent.content_type == "application/json" && sent.custom == "v");
let text = http::post("{echo}", "plain words").json();
check("text body", || text.body == "plain words" && text.content_type.starts_with("text/plain"));
"#,
        redirect = app.url("/redirect"),
        json = plain.url("/json"),
        good = app.url("/good"),
        echo = app.url("/echo"),
    ), &[], &[("PASSWORD", "pw-9c41e")]);
    assert_code(&run, 1);
    let put = run
        .events
        .iter()
        .find(|e| e["type"] == "binding_start" && e["name"] == "http::request")
        .expect("request recorded");
    assert_eq!(put["args"]["body"]["json"]["pw"], "***", "{put}");
    assert_eq!(put["args"]["query"]["q"], "a b", "{put}");
    assert!(!run.transcript.contains("pw-9c41e"));
    for title in [
        "request sent",
        "text body",
        "redirect followed",
        "http2 over tls",
        "http1 in the clear",
        "lower-case headers",
        "json body",
        "redirect kept",
        "head",
    ] {
        assert_passed(&run, title);
    }
    assert_failed_with(&run, "not json", "is not JSON");
}

#[test]
fn get_all_sends_at_once_and_keeps_the_order() {
    let app = servers::https_app(pki(), Kind::Valid);
    let ws = workspace();
    let run = ws.run(&format!(
        r#"
let urls = ["{slow}", "{fast}", "{slow}", "{slow}"];
let all = http::get_all(urls);
check("in order", || all.map(|r| r.text) == ["slow", "open", "slow", "slow"]);
let kept = http::get_all(["{fast}", "http://127.0.0.1:1/"], #{{keep_errors: true}});
check("errors kept", || kept[0].status == 200 && kept[1].status == 0 && kept[1].error.contains("connection refused"));
check("errors fail", || http::get_all(["{fast}", "http://127.0.0.1:1/"]));
"#,
        slow = app.url("/slow?ms=400"),
        fast = app.url("/open"),
    ));
    assert_code(&run, 1);
    assert_passed(&run, "in order");
    assert_passed(&run, "errors kept");
    assert_failed_with(&run, "errors fail", "1 of 2 requests failed");
    let first = run
        .events
        .iter()
        .find(|e| e["type"] == "binding_end" && e["name"] == "http::get_all")
        .expect("get_all recorded");
    let took = first["duration_ms"].as_u64().unwrap_or(u64::MAX);
    assert!(took < 1200, "three 400 ms requests took {took} ms together");
}

#[test]
fn http_errors_say_what_happened_to_which_host() {
    let self_signed = servers::https_app(pki(), Kind::SelfSigned);
    let wrong_host = servers::https_app(pki(), Kind::WrongHost);
    let expired = servers::https_app(pki(), Kind::Expired);
    let valid = servers::https_app(pki(), Kind::Valid);
    let ws = workspace();
    std::fs::write(
        ws.path().join("runbook.toml"),
        "[environments.bare]\ndescription = \"public roots only\"\n\n[environments.per_host]\nca = { localhost = \"ca.pem\" }\n",
    )
    .expect("config");
    let run = ws.run_with(
        &format!(
            r#"
check("refused", || http::get("http://127.0.0.1:1/"));
check("dns", || http::get("https://no-such-host.invalid/"));
check("self-signed", || http::get("{self_signed}"));
check("wrong host", || http::get("{wrong_host}", #{{ca: "ca.pem"}}));
check("expired", || http::get("{expired}", #{{ca: "ca.pem"}}));
check("internal CA without ca", || http::get("{valid}"));
check("internal CA with ca", || http::get("{valid}", #{{ca: "ca.pem"}}).status == 200);
check("unknown option", || http::get("{valid}", #{{timout: 5}}));
check("retries need idempotence", || http::post("{valid}", "x", #{{retries: 2}}));
check("not http", || http::get("ftp://example.com/"));
"#,
            self_signed = self_signed.url("/good"),
            wrong_host = wrong_host.url("/good"),
            expired = expired.url("/good"),
            valid = valid.url("/good"),
        ),
        &["--env", "bare"],
        &[],
    );
    assert_code(&run, 1);
    assert_failed_with(
        &run,
        "refused",
        "http::get on http://127.0.0.1:1/: connection refused by 127.0.0.1:1",
    );
    assert_failed_with(
        &run,
        "dns",
        "cannot resolve no-such-host.invalid (DNS lookup failed)",
    );
    let rejected = |port: u16| format!("certificate of localhost:{port} rejected: ");
    assert_failed_with(&run, "self-signed", &rejected(self_signed.port));
    assert_failed_with(
        &run,
        "wrong host",
        "not valid for localhost (it names other.test)",
    );
    assert_failed_with(&run, "expired", "certificate expired on");
    assert_failed_with(&run, "internal CA without ca", &rejected(valid.port));
    assert_passed(&run, "internal CA with ca");
    assert_failed_with(
        &run,
        "unknown option",
        "unknown option `timout` (known: method, url, headers",
    );
    assert_failed_with(
        &run,
        "retries need idempotence",
        "`retries` is only for idempotent requests",
    );
    assert_failed_with(&run, "not http", "`ftp:` URLs are not HTTP");

    let per_host = ws.run_with(
        &format!(
            "check(\"listed host\", || http::get(\"https://localhost:{port}/good\").ok);\n\
             check(\"unlisted host\", || http::get(\"https://127.0.0.1:{port}/good\"));",
            port = valid.port
        ),
        &["--env", "per_host"],
        &[],
    );
    assert_code(&per_host, 1);
    assert_passed(&per_host, "listed host");
    assert_failed_with(&per_host, "unlisted host", "certificate of 127.0.0.1:");
}

#[test]
fn retries_back_off_on_gateway_errors() {
    let app = servers::https_app(pki(), Kind::Valid);
    let ws = workspace();
    let run = ws.run(&format!(
        "check(\"flaky\", || http::get(\"{}\", #{{retries: 3}}).text == \"ready\");",
        app.url("/flaky")
    ));
    assert_code(&run, 0);
    assert_eq!(app.state.flaky.load(Ordering::SeqCst), 3);
    let notes: Vec<String> = run
        .logs()
        .into_iter()
        .filter(|l| l.contains("retrying in"))
        .collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert!(
        notes[0].contains("attempt 1 of 4 answered 503"),
        "{notes:?}"
    );
}

#[test]
fn dry_runs_skip_posts_but_send_declared_reads() {
    let app = servers::https_app(pki(), Kind::Valid);
    let ws = workspace();
    let script = format!(
        r#"
step("warm the cache", || {{ let r = http::post("{count}", #{{regions: ["eu"]}}); log(`planned: ${{r.planned}}`); }});
step("search", || http::post("{count}", "q", #{{effect: "read"}}).status);
"#,
        count = app.url("/count")
    );
    let dry = ws.run_with(&script, &["--dry-run"], &[]);
    assert_code(&dry, 0);
    assert_eq!(
        app.state.posts.load(Ordering::SeqCst),
        1,
        "only the declared read went out"
    );
    assert!(
        dry.logs().contains(&"planned: true".to_owned()),
        "{:?}",
        dry.logs()
    );
    let would = dry
        .events
        .iter()
        .find(|e| e["type"] == "binding_end" && e["name"] == "http::post")
        .expect("post recorded");
    assert_eq!(would["outcome"], "would_run", "{would}");

    let real = ws.run(&script);
    assert_code(&real, 0);
    assert_eq!(app.state.posts.load(Ordering::SeqCst), 3);
    assert!(
        real.logs().contains(&"planned: false".to_owned()),
        "{:?}",
        real.logs()
    );
}

#[test]
fn requests_use_the_https_proxy_unless_no_proxy_says_otherwise() {
    let app = servers::https_app(pki(), Kind::Valid);
    let (proxy, seen) = servers::connect_proxy();
    let ws = workspace();
    let proxy_url = format!("http://127.0.0.1:{proxy}");
    let run = ws.run_with(
        &format!(
            r#"
check("through the proxy", || http::get("https://web.test:{port}/good").text == "fine");
check("direct", || http::get("https://localhost:{port}/good").text == "fine");
"#,
            port = app.port
        ),
        &[],
        &[("HTTPS_PROXY", &proxy_url), ("NO_PROXY", "localhost")],
    );
    assert_code(&run, 0);
    let targets = seen.lock().expect("lock").clone();
    assert_eq!(targets, vec![format!("web.test:{}", app.port)]);
}

#[test]
fn every_binding_ends_at_its_deadline_on_a_black_hole() {
    let hole = servers::black_hole();
    let echo = servers::websocket(None, None);
    let ws = workspace();
    let token = hs256(json!({"exp": now() + 600}), "k");
    let run = ws.run(&format!(
        r#"
let token = "{token}";
check("http own timeout", || http::get("http://127.0.0.1:{hole}/", #{{timeout: 1}}));
check("http step timeout", #{{timeout: 1}}, || http::get("http://127.0.0.1:{hole}/"));
check("get_all own timeout", || http::get_all(["http://127.0.0.1:{hole}/a", "http://127.0.0.1:{hole}/b"], #{{timeout: 1}}));
check("tls own timeout", || tls::inspect("127.0.0.1", {hole}, #{{timeout: 1}}));
check("tls step timeout", #{{timeout: 1}}, || tls::inspect("127.0.0.1", {hole}));
check("ws own timeout", || ws::connect("ws://127.0.0.1:{hole}/", #{{timeout: 1}}));
check("ws step timeout", #{{timeout: 1}}, || ws::connect("ws://127.0.0.1:{hole}/"));
check("ws capacity own timeout", || ws::capacity("ws://127.0.0.1:{hole}/", 3, #{{timeout: 1, hold_ms: 0}}).failed == 3);
check("ws recv own timeout", || ws::connect("ws://127.0.0.1:{echo}/").recv(1));
check("ws recv step timeout", #{{timeout: 1}}, || ws::connect("ws://127.0.0.1:{echo}/").recv(60));
check("jwks own timeout", || jwt::verify(token, #{{jwks: "https://127.0.0.1:{hole}/jwks", timeout: 1}}));
check("jwks step timeout", #{{timeout: 1}}, || jwt::verify(token, #{{jwks: "https://127.0.0.1:{hole}/jwks"}}));
"#
    ));
    assert_code(&run, 1);
    let address = format!("127.0.0.1:{hole}");
    let expected = [
        (
            "http own timeout",
            format!("timed out after 1 s waiting for {address}"),
        ),
        ("http step timeout", "timed out after 1 s".to_owned()),
        ("get_all own timeout", "2 of 2 requests failed".to_owned()),
        ("tls own timeout", "no TLS handshake within 1 s".to_owned()),
        ("tls step timeout", "timed out after 1 s".to_owned()),
        (
            "ws own timeout",
            format!("timed out after 1 s waiting for {address}"),
        ),
        ("ws step timeout", "timed out after 1 s".to_owned()),
        (
            "ws recv own timeout",
            format!("no message from 127.0.0.1:{echo} within 1 s"),
        ),
        ("ws recv step timeout", "timed out after 1 s".to_owned()),
        (
            "jwks own timeout",
            "cannot fetch the JWKS: timed out after 1 s".to_owned(),
        ),
        ("jwks step timeout", "timed out after 1 s".to_owned()),
    ];
    for (title, text) in &expected {
        assert_failed_with(&run, title, text);
    }
    assert_passed(&run, "ws capacity own timeout");
    for (title, _) in expected
        .iter()
        .chain([&("ws capacity own timeout", String::new())])
    {
        let took = run.step(title)["duration_ms"].as_u64().unwrap_or(u64::MAX);
        assert!((900..4000).contains(&took), "{title} took {took} ms");
    }
    assert!(run.elapsed.as_secs() < 40, "the run took {:?}", run.elapsed);
}

#[test]
fn a_canary_bearer_token_never_reaches_any_output() {
    const CANARY: &str = "canary-7f3a9c21-d0e4-4b8e-9a55-bearer";
    const PLAIN: &str = "plain-canary-4b1d9e7a";
    let app = servers::https_app(pki(), Kind::Valid);
    let echo = servers::websocket(None, None);
    let ws = workspace();
    let script = format!(
        r#"
let token = secret("CANARY_TOKEN");
let resp = http::get("{echo_auth}", #{{bearer: token}});
log(resp.text);
log(resp.header("x-echo-authorization"));
print(resp.headers);
check("token echoed", || [resp.text, resp.header("x-echo-authorization")]);
check("token in a failing request", || http::get("http://127.0.0.1:1/", #{{bearer: token, query: #{{token: token}}}}));
check("token in a header map", || http::get_all(["{echo_auth}"], #{{headers: #{{Authorization: token}}}})[0].text == "");
let plain = http::get("{echo_auth}", #{{bearer: "{PLAIN}"}});
log(plain.text);
check("token over a websocket", || ws::connect("ws://127.0.0.1:{echo}/", #{{bearer: token}}).recv(1));
check("token decoded", || jwt::decode(token));
"#,
        echo_auth = app.url("/echo-auth"),
    );
    for (args, log) in [(&["-vv"][..], None), (&["-vv"][..], Some("trace"))] {
        let mut env = vec![("CANARY_TOKEN", CANARY)];
        if let Some(level) = log {
            env.push(("RUST_LOG", level));
        }
        let run = ws.run_with(&script, args, &env);
        assert_code(&run, 1);
        for (name, text) in [
            ("stdout", &run.stdout),
            ("stderr", &run.stderr),
            ("transcript", &run.transcript),
        ] {
            assert!(
                !text.contains(CANARY),
                "the canary reached {name} (RUST_LOG={log:?})"
            );
            assert!(
                !text.contains(PLAIN),
                "the plain token reached {name} (RUST_LOG={log:?})"
            );
        }
        assert!(
            run.logs().iter().any(|l| l == "you sent: ***"),
            "{:?}",
            run.logs()
        );
        assert!(run.stderr.contains("you sent: ***"), "{}", run.stderr);
        assert_failed_with(&run, "token echoed", "you sent: ***");
        assert_failed_with(&run, "token in a failing request", "connection refused");
        assert_failed_with(&run, "token decoded", "not a JWT");
    }
    let sent = app.state.authorization.lock().expect("lock").clone();
    assert!(
        sent.contains(&format!("Bearer {CANARY}")),
        "the token was sent: {sent:?}"
    );
    assert!(sent.contains(&format!("Bearer {PLAIN}")));
}

#[test]
fn credentials_follow_redirects_only_within_their_origin() {
    let first = servers::https_app(pki(), Kind::Valid);
    let second = servers::https_app(pki(), Kind::Valid);
    let ws = workspace();
    let run = ws.run_with(
        &format!(
            r#"
let token = secret("TOKEN");
check("same origin", || http::get("{same}", #{{bearer: token}}).text.starts_with("you sent: Bearer "));
check("other origin", || http::get("{away}", #{{bearer: token}}).text == "you sent: ");
"#,
            same = first.url("/to-echo"),
            away = first.url(&format!("/away?port={}", second.port)),
        ),
        &[],
        &[("TOKEN", "redirect-token-5d2c")],
    );
    assert_code(&run, 0);
    let first_saw = first.state.authorization.lock().expect("lock").clone();
    let second_saw = second.state.authorization.lock().expect("lock").clone();
    assert_eq!(first_saw, vec!["Bearer redirect-token-5d2c".to_owned()]);
    assert_eq!(second_saw, vec![String::new()]);
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn hs256(claims: serde_json::Value, secret: &str) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes()).expect("hmac key");
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).expect("sign")
}

fn signed(
    claims: &serde_json::Value,
    alg: Algorithm,
    key: &EncodingKey,
    kid: Option<&str>,
) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

#[test]
fn jwt_verify_accepts_good_tokens_and_explains_rejections() {
    let rsa_private = include_str!("fixtures/jwt/rsa-private.pem");
    let rsa = EncodingKey::from_rsa_pem(rsa_private.as_bytes()).expect("rsa key");
    let ec_pair = rcgen::KeyPair::generate().expect("ec key");
    let ec = EncodingKey::from_ec_pem(ec_pair.serialize_pem().as_bytes()).expect("ec key");
    let app = servers::https_app(pki(), Kind::Valid);
    let mut keys = Vec::new();
    for (key, alg, kid) in [
        (&rsa, Algorithm::RS256, "rsa-1"),
        (&ec, Algorithm::ES256, "ec-1"),
    ] {
        let mut jwk = Jwk::from_encoding_key(key, alg).expect("jwk");
        jwk.common.key_id = Some(kid.to_owned());
        keys.push(jwk);
    }
    *app.state.jwks.lock().expect("lock") = serde_json::to_string(&JwkSet { keys }).expect("jwks");

    let ws = workspace();
    std::fs::write(
        ws.path().join("rsa-public.pem"),
        include_str!("fixtures/jwt/rsa-public.pem"),
    )
    .expect("pem");
    std::fs::write(ws.path().join("ec-public.pem"), ec_pair.public_key_pem()).expect("pem");
    let claims =
        json!({"sub": "ops", "iss": "https://auth.test", "aud": "elson-api", "exp": now() + 600});
    let secret = "hs256-shared-secret-for-tests";
    let good = hs256(claims.clone(), secret);
    let expired = hs256(json!({"sub": "ops", "exp": now() - 3600}), secret);
    let mut tampered = good.clone().into_bytes();
    let at = good.rfind('.').expect("signature") + 5;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).expect("text");
    let payload = good.split('.').nth(1).expect("claims");
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    let rs = signed(&claims, Algorithm::RS256, &rsa, Some("rsa-1"));
    let es = signed(&claims, Algorithm::ES256, &ec, Some("ec-1"));
    let jwks = app.url("/jwks");

    let run = ws.run_with(
        &format!(
            r#"
let key = secret("JWT_SECRET");
check("hs256", || jwt::verify("{good}", key, #{{alg: "HS256", iss: "https://auth.test", aud: "elson-api"}}).claims.sub == "ops");
check("rs256 pem", || jwt::verify("{rs}", secret("file:rsa-public.pem"), #{{aud: "elson-api"}}).claims.sub == "ops");
check("es256 pem", || jwt::verify("{es}", secret("file:ec-public.pem"), #{{aud: ["elson-api", "other"]}}).header.alg == "ES256");
check("jwks rsa", || jwt::verify("{rs}", #{{jwks: "{jwks}", aud: "elson-api"}}).header.kid == "rsa-1");
check("jwks ec", || jwt::verify("{es}", #{{jwks: "{jwks}", iss: "https://auth.test"}}).claims.iss == "https://auth.test");
check("decode", || {{ let d = jwt::decode("{good}"); d.header.alg == "HS256" && d.claims.aud == "elson-api" && d.expires_in > 500 }});
check("expired", || jwt::verify("{expired}", key, #{{alg: "HS256"}}));
check("tampered", || jwt::verify("{tampered}", key, #{{}}));
check("unsigned", || jwt::verify("{unsigned}", key, #{{}}));
check("wrong issuer", || jwt::verify("{good}", key, #{{iss: "https://other.test"}}));
check("wrong audience", || jwt::verify("{good}", key, #{{aud: "billing"}}));
check("hmac token, public key", || jwt::verify("{good}", secret("file:rsa-public.pem"), #{{}}));
check("rsa token, hmac secret", || jwt::verify("{rs}", key, #{{}}));
check("algorithm not accepted", || jwt::verify("{rs}", secret("file:rsa-public.pem"), #{{alg: "ES256"}}));
check("unknown kid", || jwt::verify("{good}", #{{jwks: "{jwks}"}}));
"#
        ),
        &[],
        &[("JWT_SECRET", secret)],
    );
    assert_code(&run, 1);
    for title in [
        "hs256",
        "rs256 pem",
        "es256 pem",
        "jwks rsa",
        "jwks ec",
        "decode",
    ] {
        assert_passed(&run, title);
    }
    assert_failed_with(
        &run,
        "expired",
        "jwt::verify on token: rejected: the token expired at",
    );
    assert_failed_with(&run, "tampered", "rejected: the signature does not match");
    assert_failed_with(
        &run,
        "unsigned",
        "rejected: the token is unsigned (alg: none)",
    );
    assert_failed_with(
        &run,
        "wrong issuer",
        "issuer \"https://auth.test\" is not https://other.test",
    );
    assert_failed_with(
        &run,
        "wrong audience",
        "audience \"elson-api\" is not billing",
    );
    assert_failed_with(
        &run,
        "hmac token, public key",
        "a PEM key cannot verify an HMAC (HS*) token",
    );
    assert_failed_with(
        &run,
        "rsa token, hmac secret",
        "signed with RS256, but only HS256, HS384, HS512 is accepted",
    );
    assert_failed_with(
        &run,
        "algorithm not accepted",
        "the key is not a usable EC key",
    );
    assert_failed_with(
        &run,
        "unknown kid",
        "the token names no kid and the JWKS holds 2 keys",
    );
    assert!(
        !run.transcript.contains(secret),
        "the HMAC secret reached the transcript"
    );
}
