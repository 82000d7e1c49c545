//! The host functions every runbook has without an import: the run model, parameters, the
//! environment, secrets, logging, concurrency, confirmations and failure handlers.

use std::sync::Arc;
use std::time::Duration;

use rhai::{Array, Dynamic, EvalAltResult, FnPtr, Map, NativeCallContext, Position};

use super::binding::Family;
use super::bridge;
use super::context::{Mode, RunContext, operator};
use super::model;
use super::signal::{self, Flow};
use crate::secret::Secret;
use crate::transcript::event::{Effect, Event, LogLevel, StepKind};

type Outcome<T> = Result<T, Box<EvalAltResult>>;

fn error(message: impl Into<String>) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(message.into().into(), Position::NONE).into()
}

/// The global functions, as a family without a namespace.
pub fn family(ctx: &Arc<RunContext>) -> Family {
    let mut family = Family::new("");
    run_model(&mut family, ctx);
    parameters(&mut family, ctx);
    logging(&mut family, ctx);
    control(&mut family, ctx);
    secrets(&mut family, ctx);
    family
}

fn run_model(family: &mut Family, ctx: &Arc<RunContext>) {
    let c = ctx.clone();
    family.function(
        "section",
        None,
        &["title: &str", "body: FnPtr", "()"],
        &[
            "Groups the steps, checks and manual tasks in `body` under a heading.",
            "",
            "```rhai",
            "section(\"Database and Data\", || { check(\"Migrations at head\", || true); });",
            "```",
        ],
        move |call: NativeCallContext, title: &str, body: FnPtr| {
            model::section(&c, &call, title, &body)
        },
    );
    for (kind, name, doc) in [
        (
            StepKind::Step,
            "step",
            "Does something. A failed step stops the run (after the `on_failure` handlers) unless its options say `continue: true`. Returns what `body` returns.",
        ),
        (
            StepKind::Check,
            "check",
            "Verifies something: passes when `body` returns `true`, `()`, an empty array or `#{ok: true}`; fails on `false`, a non-empty array of findings, `#{ok: false, message}` or an error. A failed check does not stop the run; the run fails at the end unless its severity is `warning` or `info`. Returns whether it passed.",
        ),
    ] {
        let c = ctx.clone();
        family.function(
            name,
            None,
            &["title: &str", "body: FnPtr", "Dynamic"],
            &[doc, "", "```rhai", &format!("{name}(\"Verify all pods are running\", || k8s::pods_ready(\"elson\", \"app=elson-backend\").ready > 0);"), "```"],
            move |call: NativeCallContext, title: &str, body: FnPtr| model::run_step(&c, &call, kind, title, &Map::new(), &body),
        );
        let c = ctx.clone();
        family.function(
            name,
            None,
            &["title: &str", "options: Map", "body: FnPtr", "Dynamic"],
            &[&format!("`{name}` with options: `timeout` (seconds per attempt), `retries` and `delay` (seconds), `severity` for checks (critical, high, warning, info), `continue` for steps."), "", "```rhai", &format!("{name}(\"Wait for the rollout\", #{{timeout: 300, retries: 2, delay: 10}}, || true);"), "```"],
            move |call: NativeCallContext, title: &str, options: Map, body: FnPtr| model::run_step(&c, &call, kind, title, &options, &body),
        );
    }
    let c = ctx.clone();
    family.function(
        "manual",
        None,
        &["title: &str", "instructions: &str", "bool"],
        &["A task for a person: on a terminal the operator answers done, skipped or failed and who did it; without one it is recorded as pending, never as passed. Returns whether it was done.", "", "```rhai", "manual(\"Test two-factor authentication\", \"Log in with a test account and complete the 2FA prompt.\");", "```"],
        move |title: &str, instructions: &str| model::manual(&c, title, instructions),
    );
    family.function(
        "skip",
        None,
        &["reason: &str", "()"],
        &["Ends the current step or check as skipped, with the reason.", "", "```rhai", "check(\"Replication\", || { if !environment().replicated { skip(\"no replica here\"); } true });", "```"],
        |reason: &str| -> Outcome<()> { Err(signal::flow(Flow::Skip(reason.to_owned()))) },
    );
    family.function(
        "fail",
        None,
        &["message: &str", "()"],
        &[
            "Ends the current step or check as failed, with the message.",
            "",
            "```rhai",
            "step(\"Deploy\", || { if version == \"\" { fail(\"no version given\"); } });",
            "```",
        ],
        |message: &str| -> Outcome<()> { Err(signal::flow(Flow::Fail(message.to_owned()))) },
    );
}

fn parameters(family: &mut Family, ctx: &Arc<RunContext>) {
    let c = ctx.clone();
    family.function(
        "param",
        None,
        &["name: &str", "String"],
        &["A required parameter from `--param NAME=VALUE`. A run missing any required parameter fails before its first step, naming all of them.", "", "```rhai", "let version = param(\"version\");", "```"],
        move |name: &str| param(&c, name, None),
    );
    let c = ctx.clone();
    family.function(
        "param",
        None,
        &["name: &str", "default: Dynamic", "Dynamic"],
        &["An optional parameter; the value is converted to the type of `default` (integer, float, bool or string).", "", "```rhai", "let replicas = param(\"replicas\", 3);", "```"],
        move |name: &str, default: Dynamic| param(&c, name, Some(default)),
    );
    let c = ctx.clone();
    family.function(
        "secret_param",
        None,
        &["name: &str", "Secret"],
        &["A required parameter whose value is a secret: masked in every output, usable only as a secret.", "", "```rhai", "let token = secret_param(\"api_token\");", "```"],
        move |name: &str| -> Outcome<Secret> {
            declare(&c, name, None, true);
            let value = param(&c, name, None)?.to_string();
            c.masker.add(&value);
            Ok(Secret::new(format!("param:{name}"), value))
        },
    );
    let c = ctx.clone();
    family.function(
        "environment",
        None,
        &["Map"],
        &["The selected environment (`--env`) from runbook.toml: its settings plus `name` and `protected`.", "", "```rhai", "let namespace = environment().namespace;", "```"],
        move || -> Map {
            let mut map: Map = c.environment.settings.iter().map(|(k, v)| (k.as_str().into(), super::convert::from_toml(v))).collect();
            map.insert("name".into(), c.environment.name.clone().into());
            map.insert("protected".into(), c.environment.protected.into());
            map
        },
    );
    let c = ctx.clone();
    family.function(
        "dry_run",
        None,
        &["bool"],
        &[
            "Whether this is a dry run (`--dry-run`) or a plan.",
            "",
            "```rhai",
            "if dry_run() { log(\"nothing will change\"); }",
            "```",
        ],
        move || c.mode != Mode::Run,
    );
}

fn param(ctx: &RunContext, name: &str, default: Option<Dynamic>) -> Outcome<Dynamic> {
    declare(ctx, name, default.as_ref(), false);
    let Some(given) = ctx.params.get(name) else {
        if let Some(default) = default {
            return Ok(default);
        }
        if ctx.mode == Mode::Plan {
            return Ok(format!("<{name}>").into());
        }
        let mut state = ctx.state();
        if state.steps_started {
            return Err(error(format!(
                "missing required parameter `{name}`: pass --param {name}=VALUE"
            )));
        }
        state.missing_params.insert(name.to_owned());
        return Ok(String::new().into());
    };
    let Some(default) = default else {
        return Ok(given.clone().into());
    };
    let wrong = |kind: &str| error(format!("parameter `{name}` must be {kind}, not `{given}`"));
    if default.is_int() {
        given
            .trim()
            .parse::<i64>()
            .map(Dynamic::from)
            .map_err(|_| wrong("a whole number"))
    } else if default.is_float() {
        given
            .trim()
            .parse::<f64>()
            .map(Dynamic::from)
            .map_err(|_| wrong("a number"))
    } else if default.is_bool() {
        match given.trim() {
            "true" | "yes" | "1" => Ok(true.into()),
            "false" | "no" | "0" => Ok(false.into()),
            _ => Err(wrong("true or false")),
        }
    } else {
        Ok(given.clone().into())
    }
}

fn declare(ctx: &RunContext, name: &str, default: Option<&Dynamic>, secret: bool) {
    let mut state = ctx.state();
    if state.read_params.insert(name.to_owned()) {
        let default = default.map(|d| d.to_string());
        state.declared_params.push(super::context::DeclaredParam {
            name: name.to_owned(),
            default,
            secret,
        });
    }
}

fn logging(family: &mut Family, ctx: &Arc<RunContext>) {
    for (name, level, doc) in [
        (
            "log",
            LogLevel::Info,
            "Writes a line to the transcript and the screen.",
        ),
        (
            "warn",
            LogLevel::Warn,
            "Writes a warning to the transcript and the screen.",
        ),
    ] {
        let c = ctx.clone();
        family.function(
            name,
            None,
            &["message: Dynamic", "()"],
            &[
                doc,
                "",
                "```rhai",
                &format!("{name}(`deploying ${{version}}`);"),
                "```",
            ],
            move |message: Dynamic| -> Outcome<()> { log(&c, level, text_of(&message)?) },
        );
    }
}

/// A value as text for the log; a secret is refused rather than shown.
fn text_of(value: &Dynamic) -> Outcome<String> {
    if value.is::<Secret>() {
        return Err(secret_misuse("logged"));
    }
    Ok(value.to_string())
}

pub fn log(ctx: &RunContext, level: LogLevel, message: String) -> Outcome<()> {
    let step = bridge::frame().step;
    ctx.record(
        Event::Log {
            step,
            level,
            message,
        },
        false,
    )
    .map_err(|err| signal::transcript_failed(&err))
}

fn control(family: &mut Family, ctx: &Arc<RunContext>) {
    let c = ctx.clone();
    family.function(
        "parallel",
        None,
        &["closures: Array", "Array"],
        &["Runs the closures at the same time and returns their results in order. If any fails, the call fails naming each one that did, after all have finished.", "", "```rhai", "let codes = parallel([|| http::get(a).status, || http::get(b).status]);", "```"],
        move |call: NativeCallContext, closures: Array| parallel(&c, &call, closures, &Map::new()),
    );
    let c = ctx.clone();
    family.function(
        "parallel",
        None,
        &["closures: Array", "options: Map", "Array"],
        &[
            "`parallel` with `max`: at most that many closures run at once.",
            "",
            "```rhai",
            "parallel(hosts.map(|h| || tls::inspect(h, 443)), #{max: 4});",
            "```",
        ],
        move |call: NativeCallContext, closures: Array, options: Map| {
            parallel(&c, &call, closures, &options)
        },
    );
    let c = ctx.clone();
    family.function(
        "confirm",
        None,
        &["question: &str", "bool"],
        &["Asks the operator a yes/no question. Without a terminal, `--yes` answers yes in unprotected environments and `--confirm NAME` in a protected one; otherwise the answer is no. A dry run answers yes without asking.", "", "```rhai", "if !confirm(\"Roll back elson-backend?\") { fail(\"not confirmed\"); }", "```"],
        move |question: &str| confirm(&c, question),
    );
    let c = ctx.clone();
    family.function(
        "on_failure",
        None,
        &["handler: FnPtr", "()"],
        &["Registers a handler that runs if the run fails (a failed step, a failed check, or a script error), in the order registered.", "", "```rhai", "on_failure(|| alert::notify(\"oncall\", \"deploy failed\"));", "```"],
        move |handler: FnPtr| c.state().on_failure.push(handler),
    );
    let c = ctx.clone();
    family.function(
        "sleep",
        None,
        &["seconds: f64", "()"],
        &[
            "Waits; Ctrl-C and the step's timeout end the wait.",
            "",
            "```rhai",
            "sleep(2.5);",
            "```",
        ],
        move |seconds: f64| sleep(&c, seconds),
    );
    let c = ctx.clone();
    family.function(
        "sleep",
        None,
        &["seconds: i64", "()"],
        &[
            "Waits a whole number of seconds.",
            "",
            "```rhai",
            "sleep(5);",
            "```",
        ],
        move |seconds: i64| sleep(&c, seconds as f64),
    );
}

fn sleep(ctx: &RunContext, seconds: f64) -> Outcome<()> {
    if ctx.mode == Mode::Plan {
        return Ok(());
    }
    let duration = Duration::try_from_secs_f64(seconds)
        .map_err(|_| error(format!("cannot sleep {seconds} seconds")))?;
    bridge::sleep(&ctx.runtime, &ctx.cancel, duration).map_err(|interrupt| match interrupt {
        bridge::Interrupt::Cancelled => signal::interrupted(),
        bridge::Interrupt::TimedOut { after } => signal::step_timeout(after),
    })
}

fn confirm(ctx: &RunContext, question: &str) -> Outcome<bool> {
    let step = bridge::frame().step;
    let env = &ctx.environment;
    let (answer, by) = if ctx.mode != Mode::Run {
        (true, "dry run".to_owned())
    } else if ctx.interactive {
        let reply = ctx
            .ask(&format!("{question} [y/N]"))
            .unwrap_or_default()
            .to_lowercase();
        (matches!(reply.as_str(), "y" | "yes"), operator())
    } else if env.protected {
        (
            ctx.consent.confirm.as_deref() == Some(env.name.as_str()),
            "--confirm".to_owned(),
        )
    } else {
        (ctx.consent.yes, "--yes".to_owned())
    };
    let event = Event::Prompt {
        step,
        question: question.to_owned(),
        answer: if answer { "yes" } else { "no" }.into(),
        by,
    };
    ctx.record(event, false)
        .map_err(|err| signal::transcript_failed(&err))?;
    Ok(answer)
}

fn parallel(
    ctx: &RunContext,
    call: &NativeCallContext,
    closures: Array,
    options: &Map,
) -> Outcome<Array> {
    let max = match options.get("max") {
        Some(max) => usize::try_from(
            max.as_int()
                .map_err(|_| error("`max` takes a whole number"))?,
        )
        .unwrap_or(1)
        .max(1),
        None => closures.len().max(1),
    };
    let mut pointers = Vec::with_capacity(closures.len());
    for (index, closure) in closures.into_iter().enumerate() {
        let ptr = closure
            .try_cast::<FnPtr>()
            .ok_or_else(|| error(format!("parallel: item {} is not a closure", index + 1)))?;
        pointers.push(ptr);
    }
    let results = run_parallel(call, &pointers, max);
    let mut values = Array::with_capacity(results.len());
    let mut failures = Vec::new();
    for (index, result) in results.into_iter().enumerate() {
        match result {
            Ok(value) => values.push(value),
            Err(err) if signal::as_stop(&err).is_some() => return Err(err),
            Err(err) => {
                let diagnostic =
                    super::diagnostic::Diagnostic::from_eval(&err, &ctx.runbook_display);
                failures.push(format!(
                    "closure {} of {}: {}",
                    index + 1,
                    pointers.len(),
                    diagnostic.message
                ));
                values.push(Dynamic::UNIT);
            }
        }
    }
    if failures.is_empty() {
        Ok(values)
    } else {
        Err(error(format!(
            "parallel: {} failed: {}",
            failures.len(),
            failures.join("; ")
        )))
    }
}

/// Calls each closure on its own thread, `max` at a time; every thread keeps the caller's step
/// and deadline so timeouts and Ctrl-C reach it.
fn run_parallel(call: &NativeCallContext, pointers: &[FnPtr], max: usize) -> Vec<Outcome<Dynamic>> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[allow(deprecated)]
    let store = call.store_data();
    let engine = call.engine();
    let frame = bridge::frame();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Outcome<Dynamic>>>> =
        Mutex::new((0..pointers.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        for _ in 0..max.min(pointers.len()) {
            scope.spawn(|| {
                bridge::set_frame(frame);
                #[allow(deprecated)]
                let context = store.create_context(engine);
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(ptr) = pointers.get(index) else {
                        break;
                    };
                    let result = ptr.call_within_context::<Dynamic>(&context, ());
                    results.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(result);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(error("parallel: a closure did not run"))))
        .collect()
}

fn secrets(family: &mut Family, ctx: &Arc<RunContext>) {
    let c = ctx.clone();
    family.function(
        "secret",
        Some(Effect::Read),
        &["reference: &str", "Secret"],
        &["A secret by reference: `NAME` (the sources runbook.toml lists, by default the env var NAME), `env:NAME`, `file:PATH`, `vault:PATH#KEY` (KV v2), `aws:SECRET-ID#KEY` (Secrets Manager; the key picks a field of a JSON secret) or `k8s:NAMESPACE/NAME#KEY`. The value is masked in every output; it can be handed to bindings and measured with `len()`, never printed.", "", "```rhai", "let key = secret(\"SECRET_KEY\");", "check(\"SECRET_KEY is long enough\", || key.len() >= 32);", "```"],
        move |reference: &str| -> Outcome<Secret> {
            if c.mode == Mode::Plan {
                return Ok(Secret::new(reference, ""));
            }
            crate::bindings::secret::resolve(&c, reference)
        },
    );
    family.function(
        "len",
        None,
        &["secret: &mut Secret", "i64"],
        &["The secret's length in characters."],
        |s: &mut Secret| s.char_len() as i64,
    );
    family.function(
        "is_empty",
        None,
        &["secret: &mut Secret", "bool"],
        &["Whether the secret is empty."],
        |s: &mut Secret| s.expose().is_empty(),
    );
    family.function(
        "name",
        None,
        &["secret: &mut Secret", "String"],
        &["Where the secret came from (its reference), which is safe to show."],
        |s: &mut Secret| s.name().to_owned(),
    );
    family.function(
        "to_string",
        None,
        &["secret: &mut Secret", "String"],
        &["Refused: a secret cannot become text."],
        |_: &mut Secret| -> Outcome<String> { Err(secret_misuse("turned into text")) },
    );
    family.function(
        "to_debug",
        None,
        &["secret: &mut Secret", "String"],
        &["Refused: a secret cannot become text."],
        |_: &mut Secret| -> Outcome<String> { Err(secret_misuse("printed")) },
    );
    for name in ["print", "debug"] {
        family.function(
            name,
            None,
            &["secret: Secret", "()"],
            &["Refused: a secret cannot be printed."],
            |_: Secret| -> Outcome<()> { Err(secret_misuse("printed")) },
        );
    }
    family.function(
        "+",
        None,
        &["a: &str", "secret: Secret", "String"],
        &["Refused: a secret cannot be joined to text."],
        |_: &str, _: Secret| -> Outcome<String> { Err(secret_misuse("joined to text")) },
    );
    family.function(
        "+",
        None,
        &["secret: Secret", "b: &str", "String"],
        &["Refused: a secret cannot be joined to text."],
        |_: Secret, _: &str| -> Outcome<String> { Err(secret_misuse("joined to text")) },
    );
    family.function(
        "+",
        None,
        &["a: Secret", "b: Secret", "String"],
        &["Refused: secrets cannot be joined."],
        |_: Secret, _: Secret| -> Outcome<String> { Err(secret_misuse("joined to text")) },
    );
}

fn secret_misuse(what: &str) -> Box<EvalAltResult> {
    error(format!(
        "a secret cannot be {what}: hand it to a binding as it is (a header value, a password, a token)"
    ))
}
