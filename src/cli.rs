//! The command line: clap definitions and what each command does with them.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::engine::context::Consent;
use crate::engine::run::{self, ReportFormat, Request};
use crate::engine::screen::Verbosity;
use crate::transcript::render::Report;
use crate::transcript::verify::verify_file;

#[derive(Debug, Parser)]
#[command(
    name = "runbook",
    version,
    about = "Run operational runbooks written in Rhai, with a verifiable transcript"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a runbook.
    Run(RunArgs),
    /// Compile and lint runbooks without running anything.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Show the sections, steps, checks and manual tasks a run would go through.
    Plan(PlanArgs),
    /// List the runbooks in a folder with their descriptions.
    List { dir: Option<PathBuf> },
    /// Reference of every host function, from the engine's own metadata.
    Docs { namespace: Option<String> },
    /// Check a transcript's hash chain and completeness.
    Verify { transcript: PathBuf },
    /// Render a transcript as Markdown, JUnit XML, JSON or HTML.
    Report {
        transcript: PathBuf,
        #[arg(long, value_parser = parse_format, default_value = "markdown")]
        format: ReportFormat,
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct Target {
    /// The runbook file.
    pub file: PathBuf,
    /// The environment from runbook.toml.
    #[arg(long = "env")]
    pub environment: Option<String>,
    /// A parameter the runbook reads with param(); repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// runbook.toml to use instead of the one beside the runbook.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub target: Target,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub target: Target,
    /// Run reads for real; record mutations and notifications as "would ...".
    #[arg(long)]
    pub dry_run: bool,
    /// Answer confirmations with yes (unprotected environments only).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Confirm changes to this protected environment in advance (type its name).
    #[arg(long, value_name = "ENVIRONMENT")]
    pub confirm: Option<String>,
    /// The kubeconfig context to use, instead of the environment's `context` setting.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Plain timestamped lines instead of the live view.
    #[arg(long)]
    pub no_progress: bool,
    /// Where run folders go.
    #[arg(long, default_value = ".runbook/runs")]
    pub runs_dir: PathBuf,
    /// Also write a report, e.g. junit:report.xml; repeatable.
    #[arg(long = "report", value_name = "FORMAT:PATH", value_parser = parse_report)]
    pub reports: Vec<(ReportFormat, PathBuf)>,
    /// Resume an earlier run (its folder or transcript): steps that passed there are skipped.
    #[arg(long, value_name = "RUN")]
    pub resume: Option<PathBuf>,
    /// More detail: binding calls and program output (-vv: engine logs).
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only the summary.
    #[arg(short, long)]
    pub quiet: bool,
}

fn parse_param(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))?;
    if key.is_empty() {
        return Err(format!("`{text}` has no key"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

fn parse_format(text: &str) -> Result<ReportFormat, String> {
    ReportFormat::parse(text)
        .ok_or_else(|| format!("unknown format `{text}` (markdown, junit, json or html)"))
}

fn parse_report(text: &str) -> Result<(ReportFormat, PathBuf), String> {
    let (format, path) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not FORMAT:PATH"))?;
    Ok((parse_format(format)?, PathBuf::from(path)))
}

impl Cli {
    /// The level of the engine's own logs: `RUST_LOG` wins, else `-vv` means debug.
    pub fn log_level(&self) -> tracing::Level {
        match &self.command {
            Command::Run(args) if args.verbose >= 2 => tracing::Level::DEBUG,
            Command::Run(args) if args.verbose == 1 => tracing::Level::INFO,
            _ => tracing::Level::WARN,
        }
    }
}

impl RunArgs {
    pub fn verbosity(&self) -> Verbosity {
        match (self.quiet, self.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            _ => Verbosity::Verbose,
        }
    }
}

/// Runs a command and returns the process exit code.
pub fn execute(cli: Cli, runtime: &tokio::runtime::Runtime, cancel: CancellationToken) -> i32 {
    match cli.command {
        Command::Run(args) => run_command(args, runtime, cancel),
        Command::Check { files } => check_command(&files, runtime),
        Command::Plan(args) => plan_command(&args, runtime),
        Command::List { dir } => list_command(dir.as_deref()),
        Command::Docs { namespace } => docs_command(namespace.as_deref(), runtime),
        Command::Verify { transcript } => verify_command(&transcript),
        Command::Report {
            transcript,
            format,
            output,
        } => report_command(&transcript, format, output.as_deref()),
    }
}

fn run_command(args: RunArgs, runtime: &tokio::runtime::Runtime, cancel: CancellationToken) -> i32 {
    let request = Request {
        runbook: args.target.file.clone(),
        environment: args.target.environment.clone(),
        params: args.target.params.clone(),
        dry_run: args.dry_run,
        consent: Consent {
            yes: args.yes,
            confirm: args.confirm.clone(),
        },
        progress: !args.no_progress && std::env::var_os("NO_COLOR").is_none(),
        verbosity: args.verbosity(),
        runs_dir: args.runs_dir.clone(),
        reports: args.reports.clone(),
        config: args.target.config.clone(),
        resume: args.resume.clone(),
        context: args.context.clone(),
    };
    match run::run(&request, runtime.handle(), cancel) {
        Ok(outcome) => {
            if let Some(error) = &outcome.error {
                eprintln!("{}", error.trim_end());
            }
            let s = &outcome.summary;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "{}: {} ({} passed, {} failed, {} warnings, {} skipped, {} pending)",
                request.runbook.display(),
                outcome.status.as_str(),
                s.passed,
                s.failed,
                s.warnings,
                s.skipped,
                s.pending
            );
            let _ = writeln!(out, "transcript: {}", outcome.transcript.display());
            let _ = writeln!(
                out,
                "report: {}",
                outcome.run_dir.join("report.md").display()
            );
            outcome.status.exit_code()
        }
        Err(error) => {
            eprintln!("{}", prefixed(&error.to_string()));
            error.exit_code()
        }
    }
}

/// Messages from before a run started, in the `error:` form diagnostics use.
fn prefixed(text: &str) -> String {
    if text.starts_with("error:") {
        text.to_owned()
    } else {
        format!("error: {text}")
    }
}

fn check_command(files: &[PathBuf], runtime: &tokio::runtime::Runtime) -> i32 {
    let mut failed = false;
    for file in files {
        match crate::engine::lint::check(file, runtime.handle()) {
            Ok((errors, warnings)) => {
                for warning in &warnings {
                    eprint!("{}", warning.render().replacen("error:", "warning:", 1));
                }
                for error in &errors {
                    eprint!("{}", error.render());
                }
                if errors.is_empty() {
                    println!("{}: ok", file.display());
                } else {
                    failed = true;
                    println!("{}: {} problem(s)", file.display(), errors.len());
                }
            }
            Err(error) => {
                failed = true;
                eprintln!("{}", prefixed(&error.to_string()));
            }
        }
    }
    if failed { 2 } else { 0 }
}

fn plan_command(args: &PlanArgs, runtime: &tokio::runtime::Runtime) -> i32 {
    let target = &args.target;
    let plan = match crate::engine::lint::plan(
        &target.file,
        target.config.as_deref(),
        target.environment.as_deref(),
        &target.params,
        runtime.handle(),
    ) {
        Ok(plan) => plan,
        Err(error) => {
            eprintln!("{}", prefixed(&error.to_string()));
            return error.exit_code();
        }
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{} in {}", target.file.display(), plan.environment);
    for param in &plan.params {
        let detail = match (&param.default, param.secret) {
            (_, true) => "required, secret".to_owned(),
            (Some(default), _) => format!("default {default}"),
            (None, _) => "required".to_owned(),
        };
        let _ = writeln!(out, "param {} ({detail})", param.name);
    }
    let mut open: Vec<String> = Vec::new();
    for step in &plan.steps {
        let common = open
            .iter()
            .zip(&step.sections)
            .take_while(|(a, b)| a == b)
            .count();
        for (depth, title) in step.sections.iter().enumerate().skip(common) {
            let _ = writeln!(out, "{}{title}", "  ".repeat(depth));
        }
        open = step.sections.clone();
        let effects: Vec<&str> = step.effects.iter().map(|e| e.as_str()).collect();
        let effects = if effects.is_empty() {
            "-".to_owned()
        } else {
            effects.join(", ")
        };
        let indent = "  ".repeat(step.sections.len());
        let _ = writeln!(
            out,
            "{indent}{:<6} {}  [{effects}]",
            step.kind.as_str(),
            step.title
        );
    }
    let _ = writeln!(out, "{} steps, checks and manual tasks", plan.steps.len());
    for (sections, title) in &plan.duplicates {
        eprintln!(
            "warning: duplicate title `{title}` in `{}`",
            sections.join(" › ")
        );
    }
    if let Some(incomplete) = &plan.incomplete {
        eprintln!(
            "warning: the plan stops early; the runbook needs real values at its top level:\n{}",
            incomplete.trim_end()
        );
    }
    0
}

fn list_command(dir: Option<&Path>) -> i32 {
    let dir = dir.unwrap_or(Path::new("runbooks"));
    let mut files = Vec::new();
    collect_runbooks(dir, &mut files);
    if files.is_empty() {
        eprintln!("error: no runbooks (*.rhai) in {}", dir.display());
        return 2;
    }
    files.sort();
    let mut out = std::io::stdout().lock();
    for file in files {
        let header = Header::read(&file);
        let schedule = header
            .every
            .map(|e| format!(" [every: {e}]"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{}  {}{schedule}",
            file.display(),
            header.description.unwrap_or_default()
        );
    }
    0
}

fn collect_runbooks(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_runbooks(&path, files);
        } else if path.extension().is_some_and(|e| e == "rhai") {
            files.push(path);
        }
    }
}

/// A runbook's leading `//!` lines: the first is its description, `every:` its schedule.
#[derive(Debug, Default)]
pub struct Header {
    pub description: Option<String>,
    pub every: Option<String>,
}

impl Header {
    pub fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let mut header = Header::default();
        for line in text
            .lines()
            .map(str::trim)
            .take_while(|l| l.starts_with("//!"))
        {
            let content = line.trim_start_matches("//!").trim();
            if let Some(every) = content.strip_prefix("every:") {
                header.every = Some(every.trim().to_owned());
            } else if header.description.is_none() && !content.is_empty() {
                header.description = Some(content.to_owned());
            }
        }
        header
    }
}

fn docs_command(namespace: Option<&str>, runtime: &tokio::runtime::Runtime) -> i32 {
    let engine = crate::engine::run::docs_engine(runtime.handle());
    match crate::engine::docs::reference(&engine, namespace) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(message) => {
            eprintln!("error: {message}");
            2
        }
    }
}

fn verify_command(path: &Path) -> i32 {
    let verification = match verify_file(path) {
        Ok(verification) => verification,
        Err(err) => {
            eprintln!("error: cannot read {}: {err}", path.display());
            return 2;
        }
    };
    let count = verification.records.len();
    match &verification.problem {
        None => {
            let status = verification.run_status().map_or("unknown", |s| s.as_str());
            println!(
                "{}: intact and complete, {count} events, run {status}",
                path.display()
            );
            0
        }
        Some(problem) => {
            println!("{}: {problem}", path.display());
            println!("{count} events before it are intact");
            1
        }
    }
}

fn report_command(path: &Path, format: ReportFormat, output: Option<&Path>) -> i32 {
    let verification = match verify_file(path) {
        Ok(verification) => verification,
        Err(err) => {
            eprintln!("error: cannot read {}: {err}", path.display());
            return 2;
        }
    };
    if let Some(problem) = &verification.problem {
        eprintln!("warning: {}: {problem}", path.display());
    }
    let text = format.render(&Report::from_records(&verification.records));
    match output {
        Some(output) => match std::fs::write(output, text) {
            Ok(()) => 0,
            Err(err) => {
                eprintln!("error: cannot write {}: {err}", output.display());
                2
            }
        },
        None => {
            print!("{text}");
            if format != ReportFormat::Markdown {
                println!();
            }
            0
        }
    }
}
