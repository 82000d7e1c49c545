//! `shell::`: local programs, run from an argument list (never through a shell), with their
//! output streamed into the transcript.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Array, Dynamic, Map};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use crate::engine::binding::{Call, Failure, Family};
use crate::engine::bridge;
use crate::engine::context::RunContext;
use crate::secret::Secret;
use crate::transcript::event::{Effect, Event, Stream};

type Outcome<T> = Result<T, Box<rhai::EvalAltResult>>;

pub fn family(ctx: &Arc<RunContext>) -> Family {
    let mut family = Family::new("shell");
    let c = ctx.clone();
    family.function(
        "run",
        Some(Effect::Mutate),
        &["argv: Array", "Map"],
        &[
            "Runs a local program from its argument list (no shell, no interpolation) and returns `#{code, stdout, stderr, duration_ms}`. Output lines stream into the transcript, masked. A non-zero exit is not an error unless `check: true`.",
            "",
            "```rhai",
            "let result = shell::run([\"pytest\", \"-q\"], #{cwd: \"backend\", timeout: 600, effect: \"read\"});",
            "```",
        ],
        move |argv: Array| run(&c, argv, Map::new()),
    );
    let c = ctx.clone();
    family.function(
        "run",
        Some(Effect::Mutate),
        &["argv: Array", "options: Map", "Map"],
        &[
            "`shell::run` with options: `cwd` (relative to the runbook's folder), `env` (a map; values may be secrets), `timeout` (seconds), `effect` (`read` when the program changes nothing, so dry runs run it), `check` (fail on a non-zero exit).",
        ],
        move |argv: Array, options: Map| run(&c, argv, options),
    );
    family
}

struct Spec {
    argv: Vec<String>,
    shown: Vec<String>,
    cwd: std::path::PathBuf,
    env: Vec<(String, String)>,
    timeout: Option<Duration>,
    effect: Effect,
    check: bool,
}

fn run(ctx: &Arc<RunContext>, argv: Array, options: Map) -> Outcome<Map> {
    let spec = parse(ctx, argv, &options).map_err(|message| -> Box<rhai::EvalAltResult> {
        format!("shell::run: {message}").into()
    })?;
    let target = spec.shown.join(" ");
    let call = Call::new(ctx, "shell::run", spec.effect, target.clone())
        .args(serde_json::json!({ "argv": spec.shown, "cwd": spec.cwd.display().to_string() }));
    let id = call.id;
    let step = bridge::frame().step;
    let check = spec.check;
    let result = call.run(planned, execute(ctx.clone(), spec, id, step))?;
    let code = result
        .get("code")
        .and_then(|c| c.as_int().ok())
        .unwrap_or(0);
    if check && code != 0 {
        let stderr = result
            .get("stderr")
            .map(|s| s.to_string())
            .unwrap_or_default();
        let last = stderr.lines().last().unwrap_or("").to_owned();
        return Err(format!(
            "shell::run on {target}: exited with code {code}: {}",
            ctx.masker.mask(&last)
        )
        .into());
    }
    Ok(result)
}

fn planned() -> Map {
    let mut map = Map::new();
    map.insert("code".into(), Dynamic::from(0_i64));
    map.insert("stdout".into(), "".into());
    map.insert("stderr".into(), "".into());
    map.insert("duration_ms".into(), Dynamic::from(0_i64));
    map.insert("planned".into(), true.into());
    map
}

fn parse(ctx: &RunContext, argv: Array, options: &Map) -> Result<Spec, String> {
    if argv.is_empty() {
        return Err("argv is empty: give the program and its arguments as an array".into());
    }
    let mut real = Vec::new();
    let mut shown = Vec::new();
    for item in argv {
        let (value, display) = text_or_secret(item);
        real.push(value);
        shown.push(display);
    }
    let mut spec = Spec {
        argv: real,
        shown,
        cwd: ctx.runbook_dir.clone(),
        env: Vec::new(),
        timeout: None,
        effect: Effect::Mutate,
        check: false,
    };
    for (key, value) in options {
        match key.as_str() {
            "cwd" => spec.cwd = ctx.runbook_dir.join(value.to_string()),
            "env" => {
                let map = value.clone().try_cast::<Map>().ok_or("`env` takes a map")?;
                spec.env = map
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), text_or_secret(v).0))
                    .collect();
            }
            "timeout" => {
                let secs = value
                    .as_float()
                    .or_else(|_| value.as_int().map(|i| i as f64))
                    .map_err(|_| "`timeout` takes seconds")?;
                spec.timeout = Some(
                    Duration::try_from_secs_f64(secs).map_err(|_| "`timeout` must be positive")?,
                );
            }
            "effect" => {
                let text = value.to_string();
                spec.effect = Effect::parse(&text)
                    .ok_or_else(|| format!("unknown effect `{text}` (read, mutate or notify)"))?;
            }
            "check" => spec.check = value.as_bool().map_err(|_| "`check` takes true or false")?,
            other => {
                return Err(format!(
                    "unknown option `{other}` (known: cwd, env, timeout, effect, check)"
                ));
            }
        }
    }
    Ok(spec)
}

/// A value's text, and what to show for it: secrets are shown masked.
fn text_or_secret(value: Dynamic) -> (String, String) {
    match value.clone().try_cast::<Secret>() {
        Some(secret) => (secret.expose().to_owned(), crate::secret::MASK.to_owned()),
        None => {
            let text = value.to_string();
            (text.clone(), text)
        }
    }
}

async fn execute(
    ctx: Arc<RunContext>,
    spec: Spec,
    call: u64,
    step: Option<u64>,
) -> Result<Map, Failure> {
    let started = Instant::now();
    let mut command = Command::new(&spec.argv[0]);
    command
        .args(&spec.argv[1..])
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|err| {
        Failure::from_error(
            format!("cannot start `{}` in {}", spec.shown[0], spec.cwd.display()),
            &err,
        )
    })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let collect = async {
        let (out, err) = tokio::join!(
            pump(&ctx, stdout, Stream::Stdout, call, step),
            pump(&ctx, stderr, Stream::Stderr, call, step)
        );
        let status = child.wait().await;
        (out, err, status)
    };
    let (stdout, stderr, status) = match spec.timeout {
        Some(limit) => tokio::time::timeout(limit, collect).await.map_err(|_| {
            Failure::new(format!(
                "timed out after {} s and was killed",
                limit.as_secs_f64()
            ))
        })?,
        None => collect.await,
    };
    let status = status.map_err(|err| Failure::from_error("cannot wait for the program", &err))?;
    let code = status.code().map_or(-1, i64::from);
    let mut map = Map::new();
    map.insert("code".into(), code.into());
    map.insert("stdout".into(), stdout.into());
    map.insert("stderr".into(), stderr.into());
    map.insert(
        "duration_ms".into(),
        (started.elapsed().as_millis() as i64).into(),
    );
    Ok(map)
}

/// Reads a stream line by line into the transcript, returning all of it.
async fn pump(
    ctx: &RunContext,
    stream: Option<impl AsyncRead + Unpin>,
    which: Stream,
    call: u64,
    step: Option<u64>,
) -> String {
    let Some(stream) = stream else {
        return String::new();
    };
    let mut lines = BufReader::new(stream).lines();
    let mut all = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        let _ = ctx.record(
            Event::Output {
                step,
                call,
                stream: which,
                line: line.clone(),
            },
            false,
        );
        all.push_str(&line);
        all.push('\n');
    }
    all
}
