//! What the operator sees while a run goes: a live spinner on a terminal, plain timestamped
//! lines elsewhere. Everything here is already masked: it only ever shows recorded events.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::transcript::event::{Event, LogLevel, Outcome, Status, StepEnd, StepKind};
use crate::transcript::render::{status_mark, value_text};

/// How much to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

pub struct Screen {
    verbosity: Verbosity,
    live: Option<ProgressBar>,
    /// Titles of the open sections, outermost first, for the live line.
    sections: Mutex<Vec<(u64, String)>>,
}

impl Screen {
    /// A live view only on a terminal, when not asked for plain output and not in `NO_COLOR`
    /// mode's spirit of a dumb terminal (`TERM=dumb`).
    pub fn new(verbosity: Verbosity, allow_progress: bool) -> Self {
        let terminal = std::io::stderr().is_terminal()
            && std::env::var("TERM").map_or(true, |term| term != "dumb");
        let live = (allow_progress && terminal && verbosity > Verbosity::Quiet).then(|| {
            let bar = ProgressBar::new_spinner();
            let style = ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self {
            verbosity,
            live,
            sections: Mutex::new(Vec::new()),
        }
    }

    /// A screen that shows nothing (plans, docs, tests).
    pub fn silent() -> Self {
        Self {
            verbosity: Verbosity::Quiet,
            live: None,
            sections: Mutex::new(Vec::new()),
        }
    }

    pub fn is_live(&self) -> bool {
        self.live.is_some()
    }

    /// Runs `f` with the live line hidden, for prompts.
    pub fn suspend<T>(&self, f: impl FnOnce() -> T) -> T {
        match &self.live {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Shows one recorded event.
    pub fn show(&self, event: &Event) {
        if self.verbosity == Verbosity::Quiet {
            return;
        }
        match event {
            Event::SectionStart { id, title, .. } => {
                let depth = self.with_sections(|s| {
                    s.push((*id, title.clone()));
                    s.len()
                });
                self.line(&format!("{}▸ {title}", "  ".repeat(depth - 1)));
            }
            Event::SectionEnd { id, .. } => {
                self.with_sections(|s| s.retain(|(open, _)| open != id))
            }
            Event::StepStart { kind, title, .. } => self.step_started(*kind, title),
            Event::StepEnd(end) => self.step_ended(end),
            Event::Log { level, message, .. } => self.log(*level, message),
            Event::BindingStart {
                name,
                effect,
                target,
                ..
            } if self.verbose() => {
                self.detail(&format!("→ {name} ({}) {target}", effect.as_str()));
            }
            Event::BindingEnd {
                name,
                outcome: Outcome::WouldRun,
                ..
            } => {
                self.detail(&format!("would run {name} (dry run)"));
            }
            Event::BindingEnd {
                name,
                outcome,
                duration_ms,
                error,
                ..
            } if self.verbose() => {
                let error = error.as_ref().map_or(String::new(), |e| format!(": {e}"));
                self.detail(&format!("← {name} {outcome:?} in {duration_ms} ms{error}"));
            }
            Event::Output { line, .. } if self.verbose() => self.detail(&format!("| {line}")),
            // On a terminal the operator just saw the question and typed the answer.
            Event::Prompt {
                question,
                answer,
                by,
                ..
            } if !self.is_live() => {
                self.detail(&format!("{question} → {answer} ({by})"));
            }
            _ => {}
        }
    }

    /// Clears the live line at the end of a run.
    pub fn finish(&self) {
        if let Some(bar) = &self.live {
            bar.finish_and_clear();
        }
    }

    fn verbose(&self) -> bool {
        self.verbosity >= Verbosity::Verbose
    }

    fn step_started(&self, kind: StepKind, title: &str) {
        match &self.live {
            Some(bar) => {
                let path = self.with_sections(|s| {
                    s.iter()
                        .map(|(_, t)| t.as_str())
                        .collect::<Vec<_>>()
                        .join(" › ")
                });
                let prefix = if path.is_empty() {
                    String::new()
                } else {
                    format!("{path} › ")
                };
                bar.set_message(format!("{prefix}{} {title}", kind.as_str()));
                bar.reset_elapsed();
            }
            None if self.verbose() => {
                self.line(&format!("{}  … {} {title}", self.indent(), kind.as_str()))
            }
            None => {}
        }
    }

    fn step_ended(&self, end: &StepEnd) {
        let label = match (end.status, end.severity) {
            (Status::Failed, Some(severity)) if !severity.fails_run() => "warning".to_owned(),
            (status, _) => status.as_str().to_owned(),
        };
        let resumed = if end.resumed {
            ", from the earlier run"
        } else {
            ""
        };
        let indent = self.indent();
        self.line(&format!(
            "{indent}  {} {:<6} {} ({label}, {} ms{resumed})",
            status_mark(Some(end.status)),
            end.kind.as_str(),
            end.title,
            end.duration_ms
        ));
        if let Some(message) = &end.message {
            let at = end
                .location
                .as_ref()
                .map_or(String::new(), |l| format!(" at {l}"));
            self.line(&format!("{indent}      {message}{at}"));
        }
        for finding in &end.findings {
            self.line(&format!("{indent}      - {}", value_text(finding)));
        }
    }

    fn log(&self, level: LogLevel, message: &str) {
        let label = match level {
            LogLevel::Debug if !self.verbose() => return,
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        };
        self.detail(&format!("{label}: {message}"));
    }

    fn detail(&self, text: &str) {
        self.line(&format!("{}      {text}", self.indent()));
    }

    fn indent(&self) -> String {
        "  ".repeat(self.with_sections(|s| s.len().saturating_sub(1)))
    }

    fn with_sections<T>(&self, f: impl FnOnce(&mut Vec<(u64, String)>) -> T) -> T {
        f(&mut self
            .sections
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()))
    }

    /// One finished line: above the live line on a terminal, timestamped elsewhere.
    fn line(&self, text: &str) {
        match &self.live {
            Some(bar) => bar.println(text),
            None => {
                let now = chrono::Utc::now().format("%H:%M:%S%.3f");
                let _ = writeln!(std::io::stderr().lock(), "{now} {text}");
            }
        }
    }
}
