//! `tls::`: certificates as servers present them and as files hold them, with the reason a
//! verifier would reject them.

use std::sync::Arc;
use std::time::Duration;

use rhai::{Array, EvalAltResult, Map};

use crate::bindings::options;
use crate::engine::binding::{Call, Failure, Family};
use crate::engine::context::RunContext;
use crate::transcript::event::Effect;

pub mod certificate;
pub mod inspect;
pub mod trust;

type Outcome<T> = Result<T, Box<EvalAltResult>>;

/// How long a handshake may take unless the script says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

pub fn family(ctx: &Arc<RunContext>) -> Family {
    let mut family = Family::new("tls");
    let c = ctx.clone();
    family.function(
        "inspect",
        Some(Effect::Read),
        &["host: &str", "port: i64", "Map"],
        &[
            "Connects, completes a TLS handshake and reports on it even when the certificate would be rejected: `verified`, `reason` (empty when verified), `protocol`, `cipher`, `alpn`, `days_left` (of the server's own certificate) and `chain`, the presented certificates leaf first, each with `subject`, `issuer`, `sans`, `not_before`, `not_after`, `days_left`, `expired`, `self_signed`, `ca`, `serial` and `sha256`.",
            "",
            "```rhai",
            "let report = tls::inspect(\"api.example.com\", 443);",
            "check(\"Certificate valid for 30 days\", || report.verified && report.days_left > 30);",
            "```",
        ],
        move |host: &str, port: i64| inspect(&c, host, port, &Map::new()),
    );
    let c = ctx.clone();
    family.function(
        "inspect",
        Some(Effect::Read),
        &["host: &str", "port: i64", "options: Map", "Map"],
        &[
            "`tls::inspect` with options: `server_name` (the name to ask for and verify, when connecting by address), `timeout` (seconds, default 10), `ca` (a PEM bundle to trust besides the public roots, relative to the runbook's folder; default: the environment's `ca` setting).",
            "",
            "```rhai",
            "let report = tls::inspect(\"10.0.0.12\", 443, #{server_name: \"api.internal\", ca: \"certs/internal-ca.pem\"});",
            "```",
        ],
        move |host: &str, port: i64, options: Map| inspect(&c, host, port, &options),
    );
    let c = ctx.clone();
    family.function(
        "inspect_pem",
        Some(Effect::Read),
        &["text: &str", "Array"],
        &[
            "Reads the certificates in PEM text (a certificate file's contents) and returns them as `tls::inspect` describes a chain.",
            "",
            "```rhai",
            "let certs = tls::inspect_pem(bundle_text);",
            "check(\"Ingress certificate not expiring\", || certs[0].days_left > 14);",
            "```",
        ],
        move |text: &str| inspect_pem(&c, text.to_owned(), "PEM text".to_owned()),
    );
    let c = ctx.clone();
    family.function(
        "inspect_file",
        Some(Effect::Read),
        &["path: &str", "Array"],
        &[
            "Reads the certificates in a PEM file (relative to the runbook's folder), as `tls::inspect_pem` does.",
            "",
            "```rhai",
            "let certs = tls::inspect_file(\"certs/ingress.pem\");",
            "```",
        ],
        move |path: &str| {
            let full = c.runbook_dir.join(path);
            let text = std::fs::read_to_string(&full)
                .map_err(|err| format!("tls::inspect_file on {path}: cannot read {}: {err}", full.display()))?;
            inspect_pem(&c, text, path.to_owned())
        },
    );
    family
}

fn inspect(ctx: &RunContext, host: &str, port: i64, options: &Map) -> Outcome<Map> {
    let probe = probe(ctx, host, port, options)
        .map_err(|message| format!("tls::inspect on {host}:{port}: {message}"))?;
    let target = format!("{}:{}", probe.host, probe.port);
    let args = serde_json::json!({
        "host": probe.host,
        "port": probe.port,
        "server_name": probe.server_name,
        "timeout": probe.timeout.as_secs_f64(),
        "ca": probe.ca.as_ref().map(|p| p.display().to_string()),
    });
    let planned_probe = (probe.host.clone(), probe.port, probe.server_name.clone());
    Call::new(ctx, "tls::inspect", Effect::Read, target)
        .args(args)
        .run(move || planned(planned_probe), inspect::inspect(probe))
}

fn probe(ctx: &RunContext, host: &str, port: i64, options: &Map) -> Result<inspect::Probe, String> {
    let port = u16::try_from(port).map_err(|_| format!("port {port} is out of range"))?;
    let mut probe = inspect::Probe {
        host: host.to_owned(),
        port,
        server_name: host.to_owned(),
        timeout: DEFAULT_TIMEOUT,
        ca: None,
    };
    for (key, value) in options {
        match key.as_str() {
            "server_name" => probe.server_name = value.to_string(),
            "timeout" => probe.timeout = options::seconds(key, value)?,
            "ca" => {}
            other => return Err(options::unknown(other, "server_name, timeout, ca")),
        }
    }
    probe.ca = options::ca_bundle(ctx, options.get("ca"), &probe.server_name)?;
    Ok(probe)
}

fn planned((host, port, server_name): (String, u16, String)) -> Map {
    let mut map = Map::new();
    map.insert("host".into(), host.into());
    map.insert("port".into(), i64::from(port).into());
    map.insert("server_name".into(), server_name.into());
    map.insert("verified".into(), true.into());
    map.insert("reason".into(), "".into());
    for key in ["protocol", "cipher", "alpn"] {
        map.insert(key.into(), "".into());
    }
    map.insert("days_left".into(), 0_i64.into());
    map.insert("chain".into(), Array::new().into());
    map.insert("planned".into(), true.into());
    map
}

fn inspect_pem(ctx: &RunContext, text: String, target: String) -> Outcome<Array> {
    Call::new(ctx, "tls::inspect_pem", Effect::Read, target).run(Array::new, async move {
        let certs = certificate::from_pem(&text).map_err(Failure::new)?;
        Ok(certificate::to_array(&certs))
    })
}
