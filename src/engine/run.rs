//! One run of a runbook, from reading the file to the last transcript line and the reports.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::{AST, Dynamic, EvalAltResult, Scope};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::context::{Consent, ContextParts, Mode, ResumeKey, RunContext, operator};
use super::diagnostic::Diagnostic;
use super::screen::{Screen, Verbosity};
use super::signal::{self, Stop};
use crate::config::{Config, Environment};
use crate::transcript::event::{Event, LogLevel, RunEnd, RunStart, RunStatus, Status, Summary};
use crate::transcript::render::{self, Report};
use crate::transcript::verify::{Problem, verify_file};
use crate::transcript::{Masker, TranscriptWriter};

/// A report to write when the run ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Markdown,
    Junit,
    Json,
    Html,
}

impl ReportFormat {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "markdown" | "md" => Some(Self::Markdown),
            "junit" | "xml" => Some(Self::Junit),
            "json" => Some(Self::Json),
            "html" => Some(Self::Html),
            _ => None,
        }
    }

    pub fn render(self, report: &Report) -> String {
        match self {
            Self::Markdown => render::markdown(report),
            Self::Junit => render::junit(report),
            Self::Json => render::json(report),
            Self::Html => render::html(report),
        }
    }
}

/// Everything `runbook run` (and `plan`) was asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub runbook: PathBuf,
    pub environment: Option<String>,
    pub params: Vec<(String, String)>,
    pub dry_run: bool,
    pub consent: Consent,
    pub progress: bool,
    pub verbosity: Verbosity,
    pub runs_dir: PathBuf,
    pub reports: Vec<(ReportFormat, PathBuf)>,
    pub config: Option<PathBuf>,
    pub resume: Option<PathBuf>,
    /// `--context`: the kubeconfig context, overriding the environment's `context` setting.
    pub context: Option<String>,
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    pub status: RunStatus,
    pub summary: Summary,
    pub run_dir: PathBuf,
    pub transcript: PathBuf,
    /// The rendered error that ended the run, if one did.
    pub error: Option<String>,
    pub warnings: Vec<String>,
}

/// Why a run could not start. Nothing was recorded.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Usage(String),
    #[error("{}", .0.render().trim_end())]
    Script(Box<Diagnostic>),
    #[error("{0}")]
    Locked(String),
}

impl StartError {
    pub fn exit_code(&self) -> i32 {
        match self {
            StartError::Usage(_) | StartError::Script(_) => 2,
            StartError::Locked(_) => 5,
        }
    }
}

/// The parts of a run shared by `run`, `plan` and `check`.
pub struct Prepared {
    pub source: String,
    pub display: String,
    pub config: Config,
    pub environment: Environment,
    pub params: BTreeMap<String, String>,
}

pub fn prepare(
    runbook: &Path,
    config: Option<&Path>,
    environment: Option<&str>,
    params: &[(String, String)],
) -> Result<Prepared, StartError> {
    let display = super::resolver::display_path(runbook);
    let source = std::fs::read_to_string(runbook)
        .map_err(|err| StartError::Usage(format!("cannot read runbook {display}: {err}")))?;
    let config = match config {
        Some(path) => Config::load(path),
        None => Config::discover(runbook),
    }
    .map_err(|err| StartError::Usage(err.to_string()))?;
    let environment = config
        .environment(environment)
        .map_err(|err| StartError::Usage(err.to_string()))?;
    let params = params.iter().cloned().collect();
    Ok(Prepared {
        source,
        display,
        config,
        environment,
        params,
    })
}

/// Compiles a runbook; a syntax error becomes a diagnostic with its position.
pub fn compile_source(
    engine: &rhai::Engine,
    source: &str,
    display: &str,
) -> Result<AST, StartError> {
    let mut ast = engine
        .compile(source)
        .map_err(|err| StartError::Script(Box::new(Diagnostic::from_parse(&err, display))))?;
    ast.set_source(display);
    Ok(ast)
}

/// Names of parameters the script reads with `secret_param("...")`, found before it runs so
/// their values are masked from the first line of the transcript.
pub fn secret_param_names(ast: &AST) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    ast.walk(&mut |nodes: &[rhai::ASTNode]| {
        if let Some(rhai::ASTNode::Expr(rhai::Expr::FnCall(call, _))) = nodes.last()
            && call.name == "secret_param"
            && let Some(rhai::Expr::StringConstant(name, _)) = call.args.first()
        {
            names.insert(name.to_string());
        }
        true
    });
    names
}

/// Runs a runbook for real or as a dry run.
pub fn run(
    request: &Request,
    runtime: &tokio::runtime::Handle,
    cancel: CancellationToken,
) -> Result<Outcome, StartError> {
    let mut prepared = prepare(
        &request.runbook,
        request.config.as_deref(),
        request.environment.as_deref(),
        &request.params,
    )?;
    if let Some(context) = &request.context {
        let setting = toml::Value::String(context.clone());
        prepared
            .environment
            .settings
            .insert("context".into(), setting);
    }
    if let Some(name) = &request.consent.confirm
        && *name != prepared.environment.name
    {
        return Err(StartError::Usage(format!(
            "--confirm names `{name}` but the environment is `{}`",
            prepared.environment.name
        )));
    }
    let mode = if request.dry_run {
        Mode::DryRun
    } else {
        Mode::Run
    };
    let masker = crate::logging::masker();
    mask_configured_secrets(&masker, &prepared);
    let resume = match &request.resume {
        Some(path) => load_resume(path)?,
        None => HashMap::new(),
    };

    let ctx = RunContext::new(ContextParts {
        mode,
        environment: prepared.environment.clone(),
        config: prepared.config,
        params: prepared.params.clone(),
        masker: masker.clone(),
        cancel,
        runtime: runtime.clone(),
        consent: request.consent.clone(),
        screen: Screen::new(request.verbosity, request.progress),
        runbook_dir: runbook_dir(&request.runbook),
        runbook_display: prepared.display.clone(),
        writer: None,
        resume,
    });
    let engine = super::build(
        &ctx,
        super::resolver::Resolver::find_stdlib(&request.runbook),
    );
    let ast = Arc::new(compile_source(
        &engine,
        &prepared.source,
        &prepared.display,
    )?);
    let _ = ctx.ast.set(ast.clone());
    let mut secret_params: BTreeSet<String> = secret_param_names(&ast);
    secret_params.extend(ctx.config.secrets.params.iter().cloned());
    for name in &secret_params {
        if let Some(value) = prepared.params.get(name) {
            masker.add(value);
        }
    }

    let _lock = match mode {
        Mode::Run => Some(
            super::lock::acquire(&request.runbook, &prepared.environment.name, &lock_holder())
                .map_err(StartError::Locked)?,
        ),
        _ => None,
    };
    let run_id = run_id(&request.runbook, &prepared.environment.name);
    let run_dir = request.runs_dir.join(&run_id);
    std::fs::create_dir_all(&run_dir).map_err(|err| {
        StartError::Usage(format!(
            "cannot create run folder {}: {err}",
            run_dir.display()
        ))
    })?;
    let transcript = run_dir.join("transcript.jsonl");
    let writer = TranscriptWriter::create(&transcript, masker.clone()).map_err(|err| {
        StartError::Usage(format!("cannot create {}: {err}", transcript.display()))
    })?;
    ctx.attach_writer(writer);

    let start = RunStart {
        run_id,
        runbook: prepared.display.clone(),
        sha256: hex::encode(Sha256::digest(prepared.source.as_bytes())),
        git_commit: git_commit(&request.runbook),
        tool_version: env!("CARGO_PKG_VERSION").to_owned(),
        user: operator(),
        host: gethostname::gethostname().to_string_lossy().into_owned(),
        environment: prepared.environment.name.clone(),
        params: masked_params(&prepared.params, &secret_params),
        dry_run: request.dry_run,
        resumed_from: request.resume.as_ref().map(|p| p.display().to_string()),
    };
    ctx.record(Event::RunStart(start), true)
        .map_err(|err| StartError::Usage(err.to_string()))?;

    let result = evaluate(&engine, &ast, &ctx);
    let (mut status, mut error) = judge(&ctx, result);
    if matches!(status, RunStatus::Failed | RunStatus::Error)
        && let Some(handler_error) = run_failure_handlers(&engine, &ast, &ctx)
    {
        error.get_or_insert(handler_error);
    }
    let warnings = unused_params(&ctx);
    for warning in &warnings {
        let _ = super::core::log(&ctx, LogLevel::Warn, warning.clone());
    }
    let summary = ctx.state().summary.clone();
    if status == RunStatus::Passed && summary.failed > 0 {
        status = RunStatus::Failed;
    }
    let end = RunEnd {
        status,
        exit_code: status.exit_code(),
        duration_ms: ctx.started.elapsed().as_millis() as u64,
        summary: summary.clone(),
        error: error.as_ref().map(|e| masker.mask(e)),
    };
    let _ = ctx.record(Event::RunEnd(end), true);
    ctx.screen.finish();
    let transcript = ctx.close_transcript().unwrap_or(transcript);
    error = error.map(|e| masker.mask(&e));
    write_reports(ctx.report().report(), &run_dir, &request.reports);
    Ok(Outcome {
        status,
        summary,
        run_dir,
        transcript,
        error,
        warnings,
    })
}

/// An engine with every host function registered and no run behind it, for `runbook docs`.
pub fn docs_engine(runtime: &tokio::runtime::Handle) -> rhai::Engine {
    super::binding::want_docs();
    let ctx = RunContext::new(ContextParts {
        mode: Mode::Plan,
        environment: Environment {
            name: "default".into(),
            protected: false,
            settings: BTreeMap::new(),
        },
        config: Config::default(),
        params: BTreeMap::new(),
        masker: Masker::new(),
        cancel: CancellationToken::new(),
        runtime: runtime.clone(),
        consent: Consent::default(),
        screen: Screen::silent(),
        runbook_dir: PathBuf::from("."),
        runbook_display: String::new(),
        writer: None,
        resume: HashMap::new(),
    });
    super::build(&ctx, None)
}

fn evaluate(engine: &rhai::Engine, ast: &AST, ctx: &RunContext) -> Result<(), Box<EvalAltResult>> {
    let mut scope = Scope::new();
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        engine.run_ast_with_scope(&mut scope, ast)
    }));
    let result = match run {
        Ok(result) => result,
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "unknown".to_owned());
            Err(format!("internal error (please report it): {message}").into())
        }
    };
    result?;
    let missing: Vec<String> = ctx.state().missing_params.iter().cloned().collect();
    if !missing.is_empty() {
        return Err(signal::stop(Stop::MissingParams(missing)));
    }
    Ok(())
}

/// The run's status and, for errors, the rendered diagnostic.
fn judge(ctx: &RunContext, result: Result<(), Box<EvalAltResult>>) -> (RunStatus, Option<String>) {
    let Err(error) = result else {
        let summary = ctx.state().summary.clone();
        let status = if summary.failed > 0 {
            RunStatus::Failed
        } else if summary.pending > 0 {
            RunStatus::Pending
        } else {
            RunStatus::Passed
        };
        return (status, None);
    };
    match signal::as_stop(&error) {
        Some(Stop::StepFailed { title }) => (
            RunStatus::Failed,
            Some(format!("step `{title}` failed; the run stopped there")),
        ),
        Some(Stop::Interrupted) => (
            RunStatus::Interrupted,
            Some("interrupted by the operator (Ctrl-C)".into()),
        ),
        Some(Stop::Declined(message)) => (RunStatus::Aborted, Some(message)),
        Some(Stop::Transcript(message)) => (RunStatus::Error, Some(message)),
        Some(Stop::MissingParams(names)) => {
            let flags: Vec<String> = names.iter().map(|n| format!("--param {n}=VALUE")).collect();
            let diagnostic =
                Diagnostic::new(format!("missing required parameters: {}", names.join(", ")))
                    .hint(format!("pass {}", flags.join(" ")));
            (RunStatus::Error, Some(diagnostic.render()))
        }
        Some(Stop::StepTimeout(after)) => (
            RunStatus::Aborted,
            Some(format!(
                "timed out after {} s outside any step",
                after.as_secs_f64()
            )),
        ),
        None => (
            RunStatus::Error,
            Some(Diagnostic::from_eval(&error, &ctx.runbook_display).render()),
        ),
    }
}

/// Runs the `on_failure` handlers in a section of their own; returns the first error.
fn run_failure_handlers(engine: &rhai::Engine, ast: &AST, ctx: &RunContext) -> Option<String> {
    let handlers = std::mem::take(&mut ctx.state().on_failure);
    if handlers.is_empty() || ctx.cancel.is_cancelled() {
        return None;
    }
    let id = ctx.next_id();
    let _ = ctx.record(
        Event::SectionStart {
            id,
            parent: None,
            title: "on failure".into(),
        },
        false,
    );
    let previous = super::bridge::set_frame(super::bridge::Frame {
        section: Some(id),
        ..Default::default()
    });
    let started = std::time::Instant::now();
    let mut first_error = None;
    for handler in handlers {
        if let Err(err) = handler.call::<Dynamic>(engine, ast, ()) {
            let text = Diagnostic::from_eval(&err, &ctx.runbook_display).render();
            let _ = super::core::log(
                ctx,
                LogLevel::Error,
                format!("on_failure handler failed: {}", text.trim_end()),
            );
            first_error.get_or_insert(text);
        }
    }
    super::bridge::set_frame(previous);
    let status = if first_error.is_some() {
        Status::Failed
    } else {
        Status::Passed
    };
    let duration_ms = started.elapsed().as_millis() as u64;
    let _ = ctx.record(
        Event::SectionEnd {
            id,
            title: "on failure".into(),
            status,
            duration_ms,
        },
        false,
    );
    first_error.map(|e| format!("an on_failure handler failed too:\n{e}"))
}

fn unused_params(ctx: &RunContext) -> Vec<String> {
    let state = ctx.state();
    ctx.params
        .keys()
        .filter(|name| !state.read_params.contains(*name))
        .map(|name| format!("parameter `{name}` was given but the runbook never reads it"))
        .collect()
}

fn mask_configured_secrets(masker: &Masker, prepared: &Prepared) {
    for name in &prepared.config.secrets.env {
        if let Ok(value) = std::env::var(name) {
            masker.add(&value);
        }
    }
    for name in &prepared.config.secrets.params {
        if let Some(value) = prepared.params.get(name) {
            masker.add(value);
        }
    }
}

fn masked_params(
    params: &BTreeMap<String, String>,
    secret: &BTreeSet<String>,
) -> serde_json::Map<String, serde_json::Value> {
    params
        .iter()
        .map(|(k, v)| {
            let shown = if secret.contains(k) {
                crate::secret::MASK.to_owned()
            } else {
                v.clone()
            };
            (k.clone(), serde_json::Value::String(shown))
        })
        .collect()
}

/// `<UTC time>-<runbook>-<environment>`, sortable and unique enough for one machine.
fn run_id(runbook: &Path, environment: &str) -> String {
    let stem = runbook
        .file_stem()
        .map_or("runbook".into(), |s| s.to_string_lossy().into_owned());
    let now = chrono::Utc::now()
        .format("%Y%m%dT%H%M%S%.3fZ")
        .to_string()
        .replace('.', "");
    format!("{now}-{stem}-{environment}-{}", std::process::id())
}

fn lock_holder() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let since = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ");
    format!(
        "pid {} by {}@{host} since {since}",
        std::process::id(),
        operator()
    )
}

fn runbook_dir(runbook: &Path) -> PathBuf {
    let absolute = std::path::absolute(runbook).unwrap_or_else(|_| runbook.to_owned());
    absolute
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The commit checked out where the runbook lives, read from `.git` without running git.
pub fn git_commit(runbook: &Path) -> Option<String> {
    let git = crate::config::find_upwards(runbook, ".git")?;
    let git = if git.is_file() {
        let text = std::fs::read_to_string(&git).ok()?;
        let dir = text.strip_prefix("gitdir:")?.trim();
        git.parent()?.join(dir)
    } else {
        git
    };
    let head = std::fs::read_to_string(git.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref:") else {
        return Some(head.to_owned());
    };
    let reference = reference.trim();
    if let Ok(commit) = std::fs::read_to_string(git.join(reference)) {
        return Some(commit.trim().to_owned());
    }
    let common = std::fs::read_to_string(git.join("commondir"))
        .ok()
        .map(|d| git.join(d.trim()))
        .unwrap_or(git);
    if let Ok(commit) = std::fs::read_to_string(common.join(reference)) {
        return Some(commit.trim().to_owned());
    }
    let packed = std::fs::read_to_string(common.join("packed-refs")).ok()?;
    packed.lines().find_map(|line| {
        let (commit, name) = line.split_once(' ')?;
        (name == reference).then(|| commit.to_owned())
    })
}

fn write_reports(report: &Report, run_dir: &Path, extra: &[(ReportFormat, PathBuf)]) {
    let _ = std::fs::write(run_dir.join("report.md"), render::markdown(report));
    for (format, path) in extra {
        if let Err(err) = std::fs::write(path, format.render(report)) {
            tracing::warn!(path = %path.display(), %err, "cannot write report");
        }
    }
}

/// The steps that passed in an earlier run, to skip when resuming it.
fn load_resume(path: &Path) -> Result<HashMap<ResumeKey, serde_json::Value>, StartError> {
    let transcript = if path.is_dir() {
        path.join("transcript.jsonl")
    } else {
        path.to_owned()
    };
    let verification = verify_file(&transcript)
        .map_err(|err| StartError::Usage(format!("cannot read {}: {err}", transcript.display())))?;
    match &verification.problem {
        None | Some(Problem::Incomplete { .. }) | Some(Problem::CutOff { .. }) => {}
        Some(problem) => {
            return Err(StartError::Usage(format!(
                "cannot resume from {}: {problem}",
                transcript.display()
            )));
        }
    }
    let report = Report::from_records(&verification.records);
    let mut seen: HashMap<(Vec<String>, crate::transcript::event::StepKind, String), usize> =
        HashMap::new();
    let mut passed = HashMap::new();
    for (sections, step) in report.steps() {
        let sections: Vec<String> = sections.into_iter().map(str::to_owned).collect();
        let counter = seen
            .entry((sections.clone(), step.kind, step.title.clone()))
            .or_insert(0);
        let occurrence = *counter;
        *counter += 1;
        if let Some(end) = &step.end
            && end.status == Status::Passed
        {
            passed.insert(
                (sections, step.kind, step.title.clone(), occurrence),
                end.value.clone(),
            );
        }
    }
    Ok(passed)
}
