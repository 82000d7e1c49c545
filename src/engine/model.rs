//! The run model as script functions: `section`, `step`, `check`, `manual` and their helpers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, EvalAltResult, FnPtr, Map, NativeCallContext, Position};
use serde_json::Value;

use super::bridge::{self, Frame};
use super::context::{Mode, PlannedStep, RunContext, operator};
use super::convert::{from_json, to_json};
use super::diagnostic::Diagnostic;
use super::signal::{self, Flow, Stop};
use crate::transcript::event::{Event, Severity, Status, StepEnd, StepKind};

type Outcome<T> = Result<T, Box<EvalAltResult>>;

/// What a step's options map may say.
#[derive(Debug, Clone, Default)]
pub struct StepOptions {
    pub timeout: Option<Duration>,
    pub retries: u32,
    pub delay: Duration,
    pub severity: Option<Severity>,
    pub keep_going: bool,
}

const OPTION_NAMES: &str = "timeout, retries, delay, severity, keep_going (or \"continue\")";

impl StepOptions {
    pub fn parse(kind: StepKind, options: &Map) -> Result<Self, String> {
        let mut parsed = StepOptions {
            severity: (kind == StepKind::Check).then_some(Severity::High),
            ..Self::default()
        };
        for (key, value) in options {
            match key.as_str() {
                "timeout" => parsed.timeout = Some(seconds(key, value)?),
                "delay" => parsed.delay = seconds(key, value)?,
                "retries" => {
                    let n = value
                        .as_int()
                        .map_err(|_| "`retries` takes a whole number".to_owned())?;
                    parsed.retries =
                        u32::try_from(n).map_err(|_| "`retries` cannot be negative".to_owned())?;
                }
                "severity" if kind == StepKind::Check => {
                    let text = value.to_string();
                    parsed.severity = Some(Severity::parse(&text).ok_or_else(|| {
                        format!("unknown severity `{text}` (critical, high, warning or info)")
                    })?);
                }
                // `continue` is a Rhai keyword, so it must be quoted in a map literal;
                // `keep_going` says the same without quotes.
                "continue" | "keep_going" if kind == StepKind::Step => {
                    parsed.keep_going = value
                        .as_bool()
                        .map_err(|_| "`continue` takes true or false".to_owned())?;
                }
                other => {
                    return Err(format!(
                        "unknown {} option `{other}` (known: {OPTION_NAMES})",
                        kind.as_str()
                    ));
                }
            }
        }
        Ok(parsed)
    }

    fn to_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        if let Some(timeout) = self.timeout {
            map.insert("timeout".into(), timeout.as_secs_f64().into());
        }
        if self.retries > 0 {
            map.insert("retries".into(), self.retries.into());
            map.insert("delay".into(), self.delay.as_secs_f64().into());
        }
        if self.keep_going {
            map.insert("continue".into(), true.into());
        }
        if map.is_empty() {
            Value::Null
        } else {
            Value::Object(map)
        }
    }
}

fn seconds(key: &str, value: &Dynamic) -> Result<Duration, String> {
    let secs = value
        .as_float()
        .or_else(|_| value.as_int().map(|i| i as f64))
        .map_err(|_| format!("`{key}` takes a number of seconds"))?;
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("`{key}` must be a positive number of seconds"))
}

/// How one attempt at a step ended.
enum Verdict {
    Passed(Dynamic),
    Failed {
        message: String,
        findings: Vec<Value>,
        location: Option<String>,
    },
    Skipped(String),
}

fn runtime_error(message: impl Into<String>) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(message.into().into(), Position::NONE).into()
}

/// `section(title, body)`: groups steps as the checklist's headings do.
pub fn section(
    ctx: &Arc<RunContext>,
    call: &NativeCallContext,
    title: &str,
    body: &FnPtr,
) -> Outcome<()> {
    let outer = bridge::frame();
    if outer.step.is_some() {
        return Err(runtime_error(format!(
            "section `{title}` inside a step: sections group steps, not the other way round"
        )));
    }
    fail_on_missing_params(ctx)?;
    let id = ctx.next_id();
    ctx.open_section(id, outer.section, title);
    record(
        ctx,
        Event::SectionStart {
            id,
            parent: outer.section,
            title: title.to_owned(),
        },
    )?;
    let failed_before = ctx.state().summary.failed;
    let started = Instant::now();
    bridge::set_frame(Frame {
        section: Some(id),
        ..outer
    });
    let result = body.call_within_context::<Dynamic>(call, ());
    bridge::set_frame(outer);
    let failed = result.is_err() || ctx.state().summary.failed > failed_before;
    let status = if failed {
        Status::Failed
    } else {
        Status::Passed
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    record(
        ctx,
        Event::SectionEnd {
            id,
            title: title.to_owned(),
            status,
            duration_ms,
        },
    )?;
    result.map(|_| ())
}

/// `step(...)` and `check(...)`.
pub fn run_step(
    ctx: &Arc<RunContext>,
    call: &NativeCallContext,
    kind: StepKind,
    title: &str,
    options: &Map,
    body: &FnPtr,
) -> Outcome<Dynamic> {
    let options = StepOptions::parse(kind, options).map_err(runtime_error)?;
    let outer = begin(ctx, kind, title)?;
    let occurrence = ctx.note_title(outer.section, kind, title);
    if ctx.mode == Mode::Plan {
        plan(
            ctx,
            outer.section,
            kind,
            title,
            super::analysis::effects_of(ctx, body),
        );
        return Ok(Dynamic::UNIT);
    }
    let id = ctx.next_id();
    record(
        ctx,
        Event::StepStart {
            id,
            section: outer.section,
            kind,
            title: title.to_owned(),
            options: options.to_json(),
        },
    )?;
    if let Some(value) = ctx.resumed(outer.section, kind, title, occurrence) {
        let end = step_end(id, kind, title, Status::Passed, 0, &options);
        let restored = from_json(&value);
        record(
            ctx,
            Event::StepEnd(StepEnd {
                value,
                resumed: true,
                ..end
            }),
        )?;
        ctx.count(Status::Passed, true);
        return Ok(restored);
    }
    let started = Instant::now();
    let mut attempts = 0;
    let verdict = loop {
        attempts += 1;
        let verdict = attempt(ctx, call, outer, id, kind, &options, body);
        let verdict = match verdict {
            Ok(verdict) => verdict,
            Err((status, message, stop)) => {
                let mut end = step_end(
                    id,
                    kind,
                    title,
                    status,
                    started.elapsed().as_millis() as u64,
                    &options,
                );
                end.message = Some(message);
                end.attempts = attempts;
                record(ctx, Event::StepEnd(end))?;
                ctx.count(status, true);
                return Err(stop);
            }
        };
        let retry = matches!(verdict, Verdict::Failed { .. }) && attempts <= options.retries;
        if !retry {
            break verdict;
        }
        if let Verdict::Failed { message, .. } = &verdict {
            let note = format!(
                "attempt {attempts} of {} failed: {message}; retrying in {} s",
                options.retries + 1,
                options.delay.as_secs_f64()
            );
            record(
                ctx,
                Event::Log {
                    step: Some(id),
                    level: crate::transcript::event::LogLevel::Warn,
                    message: note,
                },
            )?;
        }
        let _ = bridge::set_frame(Frame {
            step: Some(id),
            deadline: None,
            ..outer
        });
        let slept = bridge::sleep(&ctx.runtime, &ctx.cancel, options.delay);
        bridge::set_frame(outer);
        if slept.is_err() {
            break verdict;
        }
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    finish(
        ctx,
        id,
        kind,
        title,
        &options,
        verdict,
        attempts,
        duration_ms,
    )
}

/// Checks that a step may start here, and fails fast on parameters that were never given.
fn begin(ctx: &RunContext, kind: StepKind, title: &str) -> Outcome<Frame> {
    let outer = bridge::frame();
    if outer.step.is_some() {
        return Err(runtime_error(format!(
            "{} `{title}` inside another step: steps and checks cannot be nested; group them with section()",
            kind.as_str()
        )));
    }
    fail_on_missing_params(ctx)?;
    Ok(outer)
}

/// The run's real work begins: every required parameter must be there by now.
fn fail_on_missing_params(ctx: &RunContext) -> Outcome<()> {
    let missing: Vec<String> = {
        let mut state = ctx.state();
        state.steps_started = true;
        state.missing_params.iter().cloned().collect()
    };
    if !missing.is_empty() && ctx.mode != Mode::Plan {
        return Err(signal::stop(Stop::MissingParams(missing)));
    }
    Ok(())
}

fn plan(
    ctx: &RunContext,
    section: Option<u64>,
    kind: StepKind,
    title: &str,
    effects: std::collections::BTreeSet<crate::transcript::event::Effect>,
) {
    let sections = ctx.section_path(section);
    ctx.state().plan.push(PlannedStep {
        sections,
        kind,
        title: title.to_owned(),
        effects,
    });
}

type Abort = (Status, String, Box<EvalAltResult>);

/// One call of the body, judged.
fn attempt(
    ctx: &RunContext,
    call: &NativeCallContext,
    outer: Frame,
    id: u64,
    kind: StepKind,
    options: &StepOptions,
    body: &FnPtr,
) -> Result<Verdict, Abort> {
    let deadline = options.timeout.map(|t| (Instant::now() + t, t));
    bridge::set_frame(Frame {
        section: outer.section,
        step: Some(id),
        deadline,
    });
    let result = body.call_within_context::<Dynamic>(call, ());
    bridge::set_frame(outer);
    match result {
        Ok(value) => Ok(judge(kind, value)),
        Err(error) => judge_error(ctx, error),
    }
}

fn judge(kind: StepKind, value: Dynamic) -> Verdict {
    if kind != StepKind::Check {
        return Verdict::Passed(value);
    }
    if value.is_unit() || value.as_bool() == Ok(true) {
        return Verdict::Passed(value);
    }
    if value.as_bool() == Ok(false) {
        return failed("the check returned false", Vec::new());
    }
    if let Some(findings) = value.clone().try_cast::<rhai::Array>() {
        if findings.is_empty() {
            return Verdict::Passed(value);
        }
        let count = findings.len();
        let noun = if count == 1 { "finding" } else { "findings" };
        return failed(
            format!("{count} {noun}"),
            findings.iter().map(to_json).collect(),
        );
    }
    if let Some(map) = value.clone().try_cast::<Map>()
        && let Some(ok) = map.get("ok").and_then(|ok| ok.as_bool().ok())
    {
        if ok {
            return Verdict::Passed(value);
        }
        let message = map
            .get("message")
            .map_or("the check reported ok: false".to_owned(), |m| m.to_string());
        let findings = map
            .get("findings")
            .and_then(|f| f.clone().try_cast::<rhai::Array>())
            .map(|f| f.iter().map(to_json).collect())
            .unwrap_or_default();
        return failed(message, findings);
    }
    Verdict::Passed(value)
}

fn failed(message: impl Into<String>, findings: Vec<Value>) -> Verdict {
    Verdict::Failed {
        message: message.into(),
        findings,
        location: None,
    }
}

fn judge_error(ctx: &RunContext, error: Box<EvalAltResult>) -> Result<Verdict, Abort> {
    if let Some(stop) = signal::as_stop(&error) {
        return match stop {
            Stop::StepTimeout(after) => Ok(failed(
                format!("timed out after {} s", after.as_secs_f64()),
                Vec::new(),
            )),
            Stop::Interrupted => Err((
                Status::Interrupted,
                "interrupted by the operator".into(),
                error,
            )),
            Stop::Declined(message) => Err((Status::Failed, message, error)),
            other => Err((Status::Failed, format!("{other:?}"), error)),
        };
    }
    if let Some(flow) = signal::as_flow(&error) {
        return Ok(match flow {
            Flow::Skip(reason) => Verdict::Skipped(reason),
            Flow::Fail(message) => failed(message, Vec::new()),
        });
    }
    let diagnostic = Diagnostic::from_eval(&error, &ctx.runbook_display);
    let mut message = ctx.masker.mask(&diagnostic.message);
    for cause in &diagnostic.causes {
        message.push_str("; caused by: ");
        message.push_str(&ctx.masker.mask(cause));
    }
    if is_fatal(&error) {
        return Err((Status::Failed, message, error));
    }
    let location = diagnostic.location.map(|l| l.to_string());
    Ok(Verdict::Failed {
        message,
        findings: Vec::new(),
        location,
    })
}

/// Errors after which the script cannot sensibly go on.
fn is_fatal(error: &EvalAltResult) -> bool {
    matches!(
        signal::root(error),
        EvalAltResult::ErrorTooManyOperations(..)
            | EvalAltResult::ErrorStackOverflow(..)
            | EvalAltResult::ErrorDataTooLarge(..)
            | EvalAltResult::ErrorTooManyModules(..)
    )
}

fn step_end(
    id: u64,
    kind: StepKind,
    title: &str,
    status: Status,
    duration_ms: u64,
    options: &StepOptions,
) -> StepEnd {
    StepEnd {
        id,
        kind,
        title: title.to_owned(),
        status,
        duration_ms,
        attempts: 1,
        severity: options.severity,
        value: Value::Null,
        message: None,
        findings: Vec::new(),
        location: None,
        confirmed_by: None,
        resumed: false,
    }
}

#[allow(clippy::too_many_arguments)]
fn finish(
    ctx: &RunContext,
    id: u64,
    kind: StepKind,
    title: &str,
    options: &StepOptions,
    verdict: Verdict,
    attempts: u32,
    duration_ms: u64,
) -> Outcome<Dynamic> {
    let mut end = step_end(id, kind, title, Status::Passed, duration_ms, options);
    end.attempts = attempts;
    let fails_run = options.severity.is_none_or(Severity::fails_run);
    let (result, stop) = match verdict {
        Verdict::Passed(value) => {
            end.value = to_json(&value);
            let returned = if kind == StepKind::Check {
                Dynamic::TRUE
            } else {
                value
            };
            (returned, false)
        }
        Verdict::Skipped(reason) => {
            end.status = Status::Skipped;
            end.message = Some(reason);
            (Dynamic::UNIT, false)
        }
        Verdict::Failed {
            message,
            findings,
            location,
        } => {
            end.status = Status::Failed;
            end.message = Some(message);
            end.findings = findings;
            end.location = location;
            let stops = kind == StepKind::Step && !options.keep_going;
            let returned = if kind == StepKind::Check {
                Dynamic::FALSE
            } else {
                Dynamic::UNIT
            };
            (returned, stops)
        }
    };
    let status = end.status;
    record(ctx, Event::StepEnd(end))?;
    ctx.count(status, fails_run);
    if stop {
        return Err(signal::stop(Stop::StepFailed {
            title: title.to_owned(),
        }));
    }
    Ok(result)
}

/// `manual(title, instructions)`: a person does it and says so.
pub fn manual(ctx: &Arc<RunContext>, title: &str, instructions: &str) -> Outcome<Dynamic> {
    let outer = begin(ctx, StepKind::Manual, title)?;
    let occurrence = ctx.note_title(outer.section, StepKind::Manual, title);
    if ctx.mode == Mode::Plan {
        plan(
            ctx,
            outer.section,
            StepKind::Manual,
            title,
            Default::default(),
        );
        return Ok(Dynamic::UNIT);
    }
    let id = ctx.next_id();
    let options = StepOptions::default();
    let instructions_json = serde_json::json!({ "instructions": instructions });
    record(
        ctx,
        Event::StepStart {
            id,
            section: outer.section,
            kind: StepKind::Manual,
            title: title.to_owned(),
            options: instructions_json,
        },
    )?;
    let mut end = step_end(id, StepKind::Manual, title, Status::Pending, 0, &options);
    if let Some(value) = ctx.resumed(outer.section, StepKind::Manual, title, occurrence) {
        end.status = Status::Passed;
        end.resumed = true;
        end.confirmed_by = value
            .get("confirmed_by")
            .and_then(Value::as_str)
            .map(str::to_owned);
    } else if ctx.mode == Mode::DryRun {
        end.message = Some("dry run: the operator would be asked to do this".into());
    } else if !ctx.interactive {
        end.message = Some("no terminal to confirm it on: do it by hand and record who did".into());
    } else {
        let started = Instant::now();
        ask_manual(ctx, id, title, instructions, &mut end);
        end.duration_ms = started.elapsed().as_millis() as u64;
    }
    if end.status == Status::Passed {
        end.value = serde_json::json!({ "confirmed_by": end.confirmed_by });
    }
    let status = end.status;
    record(ctx, Event::StepEnd(end))?;
    ctx.count(status, true);
    Ok((status == Status::Passed).into())
}

fn ask_manual(ctx: &RunContext, id: u64, title: &str, instructions: &str, end: &mut StepEnd) {
    ctx.screen.suspend(|| {
        eprintln!(
            "\n  ✋ {title}\n     {}\n",
            instructions.replace('\n', "\n     ")
        )
    });
    let question = "done, skipped or failed? [d/s/f]".to_owned();
    let answer = loop {
        match ctx
            .ask(&question)
            .as_deref()
            .map(str::to_lowercase)
            .as_deref()
        {
            Some("d" | "done") => break Status::Passed,
            Some("s" | "skip" | "skipped") => break Status::Skipped,
            Some("f" | "fail" | "failed") => break Status::Failed,
            None => break Status::Pending,
            Some(_) => continue,
        }
    };
    let by = match answer {
        Status::Pending => operator(),
        _ => ctx
            .ask(&format!("confirmed by [{}]", operator()))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(operator),
    };
    let _ = ctx.record(
        Event::Prompt {
            step: Some(id),
            question,
            answer: answer.as_str().into(),
            by: by.clone(),
        },
        false,
    );
    end.status = answer;
    end.confirmed_by = Some(by);
    if answer == Status::Failed {
        end.message = ctx.ask("what went wrong").filter(|s| !s.is_empty());
    }
}

fn record(ctx: &RunContext, event: Event) -> Outcome<()> {
    ctx.record(event, false)
        .map_err(|err| signal::transcript_failed(&err))
}
