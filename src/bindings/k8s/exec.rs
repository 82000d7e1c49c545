//! Commands inside a pod's container, over the exec WebSocket: stdout and stderr read at the
//! same time (a full stderr pipe must not stall stdout), each line streamed into the
//! transcript, the exit code taken from the status channel.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Status;
use kube::api::{Api, AttachParams};
use rhai::{Array, Dynamic, Map};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::dynamic::path;
use super::options::{Options, Outcome, usage};
use super::{K8s, namespace_or_default};
use crate::engine::binding::{Call, Failure, Family};
use crate::engine::bridge;
use crate::engine::context::RunContext;
use crate::secret::{MASK, Secret};
use crate::transcript::event::{Effect, Event, Stream};

pub fn register(family: &mut Family, k8s: &K8s) {
    let k = k8s.clone();
    family.function(
        "exec",
        Some(Effect::Mutate),
        &["namespace: &str", "pod: &str", "argv: Array", "Map"],
        &[
            "Runs a command in a pod (its only container) from its argument list and returns `#{code, stdout, stderr}`. Output lines stream into the transcript, masked. A non-zero exit is not an error unless `check: true`.",
            "",
            "```rhai",
            "let result = k8s::exec(\"elson\", pod, [\"alembic\", \"downgrade\", previous]);",
            "```",
        ],
        move |namespace: &str, pod: &str, argv: Array| exec(&k, namespace, pod, argv, &Map::new()),
    );
    let k = k8s.clone();
    family.function(
        "exec",
        Some(Effect::Mutate),
        &["namespace: &str", "pod: &str", "argv: Array", "options: Map", "Map"],
        &[
            "`k8s::exec` with options: `container`, `timeout` (seconds or `\"5m\"`), `effect` (`read` when the command changes nothing, so dry runs run it), `check` (fail on a non-zero exit).",
            "",
            "```rhai",
            "let current = k8s::exec(\"elson\", pod, [\"alembic\", \"current\"], #{container: \"backend\", timeout: 60, effect: \"read\"});",
            "```",
        ],
        move |namespace: &str, pod: &str, argv: Array, options: Map| {
            exec(&k, namespace, pod, argv, &options)
        },
    );
}

struct Spec {
    argv: Vec<String>,
    shown: Vec<String>,
    container: Option<String>,
    timeout: Option<Duration>,
    effect: Effect,
    check: bool,
}

fn parse(argv: Array, options: &Map) -> Outcome<Spec> {
    let known = ["container", "timeout", "effect", "check"];
    let options = Options::new("k8s::exec", options, &known)?;
    if argv.is_empty() {
        return Err(usage(
            "k8s::exec",
            "argv is empty: give the command and its arguments",
        ));
    }
    let (argv, shown) = argv
        .into_iter()
        .map(|item| match item.clone().try_cast::<Secret>() {
            Some(secret) => (secret.expose().to_owned(), MASK.to_owned()),
            None => (item.to_string(), item.to_string()),
        })
        .unzip();
    let effect = match options.string("effect")? {
        None => Effect::Mutate,
        Some(text) => Effect::parse(&text).ok_or_else(|| {
            usage(
                "k8s::exec",
                format!("unknown effect `{text}` (read, mutate or notify)"),
            )
        })?,
    };
    Ok(Spec {
        argv,
        shown,
        container: options.string("container")?,
        timeout: options.duration("timeout")?,
        effect,
        check: options.bool("check")?.unwrap_or(false),
    })
}

fn exec(k8s: &K8s, namespace: &str, pod: &str, argv: Array, options: &Map) -> Outcome<Map> {
    let spec = parse(argv, options)?;
    let target = format!("pod {}: {}", path(namespace, pod), spec.shown.join(" "));
    let args = json!({
        "namespace": namespace, "pod": pod, "argv": spec.shown, "container": spec.container,
    });
    let call = Call::new(&k8s.ctx, "k8s::exec", spec.effect, target.clone()).args(args);
    let lines = Lines {
        ctx: &k8s.ctx,
        call: call.id,
        step: bridge::frame().step,
    };
    let result = call.run(planned, run(k8s, namespace, pod, &spec, lines))?;
    let code = result
        .get("code")
        .and_then(|c| c.as_int().ok())
        .unwrap_or(0);
    if spec.check && code != 0 {
        let stderr = result
            .get("stderr")
            .map(|s| s.to_string())
            .unwrap_or_default();
        let last = stderr.lines().last().unwrap_or("").to_owned();
        let message = format!("k8s::exec on {target}: exited with code {code}: {last}");
        return Err(k8s.ctx.masker.mask(&message).into());
    }
    Ok(result)
}

fn planned() -> Map {
    let mut map = Map::new();
    map.insert("code".into(), Dynamic::from(0_i64));
    map.insert("stdout".into(), "".into());
    map.insert("stderr".into(), "".into());
    map.insert("planned".into(), true.into());
    map
}

async fn run(
    k8s: &K8s,
    namespace: &str,
    pod: &str,
    spec: &Spec,
    lines: Lines<'_>,
) -> Result<Map, Failure> {
    let connection = k8s.cluster.connect().await?;
    let namespace = namespace_or_default(connection, namespace);
    let api: Api<Pod> = Api::namespaced(connection.client.clone(), &namespace);
    let mut params = AttachParams::default()
        .stdin(false)
        .stdout(true)
        .stderr(true);
    params.container = spec.container.clone();
    let action = format!("exec in pod {namespace}/{pod}");
    let attached = api.exec(pod, spec.argv.clone(), &params).await;
    let mut process = attached.map_err(|e| connection.fail(action.clone(), e))?;
    let (stdout, stderr) = (process.stdout(), process.stderr());
    let status = process.take_status();
    let collect = async {
        let (out, err, status) = tokio::join!(
            lines.pump(stdout, Stream::Stdout),
            lines.pump(stderr, Stream::Stderr),
            async {
                match status {
                    Some(status) => status.await,
                    None => None,
                }
            }
        );
        (out, err, status)
    };
    let (stdout, stderr, status) = match spec.timeout {
        Some(limit) => tokio::time::timeout(limit, collect).await.map_err(|_| {
            process.abort();
            Failure::new(format!(
                "{action}: timed out after {} s",
                limit.as_secs_f64()
            ))
        })?,
        None => collect.await,
    };
    let code = exit_code(&action, status)?;
    let _ = process.join().await;
    let mut map = Map::new();
    map.insert("code".into(), code.into());
    map.insert("stdout".into(), stdout.into());
    map.insert("stderr".into(), stderr.into());
    Ok(map)
}

/// The exit code the status channel reports: `Success` is 0, `NonZeroExitCode` carries it.
fn exit_code(action: &str, status: Option<Status>) -> Result<i64, Failure> {
    let Some(status) = status else {
        return Err(Failure::new(format!(
            "{action}: the connection ended without an exit status"
        )));
    };
    if status.status.as_deref() == Some("Success") {
        return Ok(0);
    }
    let from_causes = status
        .details
        .as_ref()
        .and_then(|d| d.causes.as_ref())
        .and_then(|causes| {
            causes
                .iter()
                .find(|c| c.reason.as_deref() == Some("ExitCode"))
                .and_then(|c| c.message.as_deref())
                .and_then(|m| m.trim().parse::<i64>().ok())
        });
    match (status.reason.as_deref(), from_causes) {
        (Some("NonZeroExitCode"), Some(code)) => Ok(code),
        _ => Err(Failure::new(format!(
            "{action}: {}",
            status
                .message
                .unwrap_or_else(|| "the command failed".into())
        ))),
    }
}

/// Where a call's output lines go.
#[derive(Clone, Copy)]
struct Lines<'a> {
    ctx: &'a RunContext,
    call: u64,
    step: Option<u64>,
}

impl Lines<'_> {
    /// Reads a stream line by line into the transcript, returning all of it.
    async fn pump(&self, stream: Option<impl AsyncRead + Unpin>, which: Stream) -> String {
        let Some(stream) = stream else {
            return String::new();
        };
        let mut lines = BufReader::new(stream).lines();
        let mut all = String::new();
        while let Ok(Some(line)) = lines.next_line().await {
            let event = Event::Output {
                step: self.step,
                call: self.call,
                stream: which,
                line: line.clone(),
            };
            let _ = self.ctx.record(event, false);
            all.push_str(&line);
            all.push('\n');
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(value: serde_json::Value) -> Option<Status> {
        Some(serde_json::from_value(value).unwrap())
    }

    #[test]
    fn exit_codes_come_from_the_status_channel() {
        assert_eq!(
            exit_code("x", status(json!({"status": "Success"}))).unwrap(),
            0
        );
        let failed = json!({"status": "Failure", "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": "127"}]}});
        assert_eq!(exit_code("x", status(failed)).unwrap(), 127);
        let other = json!({"status": "Failure", "message": "container not found"});
        let error = exit_code("exec in pod a/b", status(other)).unwrap_err();
        assert_eq!(error.message, "exec in pod a/b: container not found");
        assert!(exit_code("x", None).is_err());
    }
}
