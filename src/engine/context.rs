//! The state one run shares between the engine and every host function.

use std::any::{Any, TypeId};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use rhai::{AST, FnPtr};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use super::screen::Screen;
use crate::config::{Config, Environment};
use crate::transcript::event::{Event, Status, StepKind, Summary};
use crate::transcript::{Masker, TranscriptWriter};

/// How host functions behave in this run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Run everything.
    Run,
    /// Reads run; mutations and notifications are recorded as "would ..." and planned.
    DryRun,
    /// Nothing runs: step bodies are skipped and every binding returns its planned value.
    Plan,
}

/// What the operator said on the command line about confirmations.
#[derive(Debug, Clone, Default)]
pub struct Consent {
    /// `--yes`: answers confirmations in unprotected environments.
    pub yes: bool,
    /// `--confirm NAME`: the protected environment's name, typed in advance.
    pub confirm: Option<String>,
}

/// A step the planner or the resumer knows about.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub sections: Vec<String>,
    pub kind: StepKind,
    pub title: String,
    pub effects: BTreeSet<crate::transcript::event::Effect>,
}

/// A parameter the runbook reads, as a plan lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredParam {
    pub name: String,
    pub default: Option<String>,
    pub secret: bool,
}

/// A step that passed in the run being resumed, keyed by where it stands.
pub type ResumeKey = (Vec<String>, StepKind, String, usize);

#[derive(Default)]
pub struct State {
    pub summary: Summary,
    pub failed_steps: u64,
    pub on_failure: Vec<FnPtr>,
    pub missing_params: BTreeSet<String>,
    pub read_params: HashSet<String>,
    pub declared_params: Vec<DeclaredParam>,
    pub steps_started: bool,
    pub plan: Vec<PlannedStep>,
    pub duplicates: Vec<(Vec<String>, String)>,
    titles: HashMap<Option<u64>, HashMap<(StepKind, String), usize>>,
    section_titles: HashMap<u64, (Option<u64>, String)>,
    confirmed_steps: HashSet<u64>,
}

pub struct RunContext {
    pub mode: Mode,
    pub environment: Environment,
    pub config: Config,
    pub params: BTreeMap<String, String>,
    pub masker: Masker,
    pub cancel: CancellationToken,
    pub runtime: Handle,
    pub consent: Consent,
    pub interactive: bool,
    pub screen: Screen,
    pub runbook_dir: std::path::PathBuf,
    /// The runbook's path as messages show it.
    pub runbook_display: String,
    pub ast: OnceLock<Arc<AST>>,
    pub effects: OnceLock<super::analysis::EffectTable>,
    pub resolver: OnceLock<Arc<super::resolver::Resolver>>,
    pub resume: HashMap<ResumeKey, serde_json::Value>,
    pub state: Mutex<State>,
    writer: Mutex<Option<TranscriptWriter>>,
    report: Mutex<crate::transcript::render::ReportBuilder>,
    ids: AtomicU64,
    shared: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    pub started: Instant,
}

/// Writing the transcript failed: the run cannot go on without its record.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the transcript: {0}")]
pub struct RecordError(#[from] std::io::Error);

pub struct ContextParts {
    pub mode: Mode,
    pub environment: Environment,
    pub config: Config,
    pub params: BTreeMap<String, String>,
    pub masker: Masker,
    pub cancel: CancellationToken,
    pub runtime: Handle,
    pub consent: Consent,
    pub screen: Screen,
    pub runbook_dir: std::path::PathBuf,
    pub runbook_display: String,
    pub writer: Option<TranscriptWriter>,
    pub resume: HashMap<ResumeKey, serde_json::Value>,
}

impl RunContext {
    pub fn new(parts: ContextParts) -> Arc<Self> {
        let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
        Arc::new(Self {
            mode: parts.mode,
            environment: parts.environment,
            config: parts.config,
            params: parts.params,
            masker: parts.masker,
            cancel: parts.cancel,
            runtime: parts.runtime,
            consent: parts.consent,
            interactive,
            screen: parts.screen,
            runbook_dir: parts.runbook_dir,
            runbook_display: parts.runbook_display,
            ast: OnceLock::new(),
            effects: OnceLock::new(),
            resolver: OnceLock::new(),
            resume: parts.resume,
            state: Mutex::new(State::default()),
            writer: Mutex::new(parts.writer),
            report: Mutex::default(),
            ids: AtomicU64::new(1),
            shared: Mutex::default(),
            started: Instant::now(),
        })
    }

    /// The report of this run so far, built from the masked events as they are written.
    pub fn report(&self) -> std::sync::MutexGuard<'_, crate::transcript::render::ReportBuilder> {
        self.report
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    /// The run's one value of type `T`, made by `init` on first use: the state a binding
    /// family keeps for the whole run (a client, a cache), reachable from the family's
    /// functions and from the secret sources that read through the same client.
    pub fn shared<T: Send + Sync + 'static>(&self, init: impl FnOnce() -> T) -> Arc<T> {
        let mut shared = self
            .shared
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let key = TypeId::of::<T>();
        if let Some(value) = shared
            .get(&key)
            .and_then(|v| v.clone().downcast::<T>().ok())
        {
            return value;
        }
        let value = Arc::new(init());
        shared.insert(key, value.clone());
        value
    }

    pub fn is_plan(&self) -> bool {
        self.mode == Mode::Plan
    }

    pub fn is_dry_run(&self) -> bool {
        self.mode == Mode::DryRun
    }

    pub fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Masks and records an event, then shows it. `durable` syncs it to disk first: used for
    /// the event announcing a side effect.
    pub fn record(&self, event: Event, durable: bool) -> Result<(), RecordError> {
        let mut writer = self
            .writer
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let Some(writer) = writer.as_mut() else {
            return Ok(());
        };
        let ts = chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let record = writer.append(ts, event, durable)?;
        self.screen.show(&record.event);
        self.report().add(&record.event);
        Ok(())
    }

    /// Starts recording into `writer`.
    pub fn attach_writer(&self, writer: TranscriptWriter) {
        *self
            .writer
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = Some(writer);
    }

    /// Syncs and closes the transcript, returning its path.
    pub fn close_transcript(&self) -> Option<std::path::PathBuf> {
        let mut writer = self
            .writer
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let mut writer = writer.take()?;
        let _ = writer.sync();
        Some(writer.path().to_owned())
    }

    /// Registers a section and returns the titles from the outermost down to it.
    pub fn open_section(&self, id: u64, parent: Option<u64>, title: &str) {
        self.state()
            .section_titles
            .insert(id, (parent, title.to_owned()));
    }

    /// The titles of `section` and the sections around it, outermost first.
    pub fn section_path(&self, section: Option<u64>) -> Vec<String> {
        let state = self.state();
        let mut path = Vec::new();
        let mut current = section;
        while let Some(id) = current {
            let Some((parent, title)) = state.section_titles.get(&id) else {
                break;
            };
            path.push(title.clone());
            current = *parent;
        }
        path.reverse();
        path
    }

    /// Counts this title within its section; returns how many times it was seen before.
    pub fn note_title(&self, section: Option<u64>, kind: StepKind, title: &str) -> usize {
        let before = {
            let mut state = self.state();
            let seen = state.titles.entry(section).or_default();
            let count = seen.entry((kind, title.to_owned())).or_insert(0);
            *count += 1;
            *count - 1
        };
        if before == 1 {
            let path = self.section_path(section);
            self.state().duplicates.push((path, title.to_owned()));
        }
        before
    }

    /// The value a step returned in the run being resumed, if it passed there.
    pub fn resumed(
        &self,
        section: Option<u64>,
        kind: StepKind,
        title: &str,
        occurrence: usize,
    ) -> Option<serde_json::Value> {
        if self.resume.is_empty() {
            return None;
        }
        let key = (
            self.section_path(section),
            kind,
            title.to_owned(),
            occurrence,
        );
        self.resume.get(&key).cloned()
    }

    /// Adds a finished step to the summary.
    pub fn count(&self, status: Status, fails_run: bool) {
        let mut state = self.state();
        let summary = &mut state.summary;
        match status {
            Status::Passed => summary.passed += 1,
            Status::Failed if fails_run => summary.failed += 1,
            Status::Failed => summary.warnings += 1,
            Status::Skipped => summary.skipped += 1,
            Status::Pending => summary.pending += 1,
            Status::Interrupted => summary.failed += 1,
        }
    }

    /// Whether `step` may change a protected environment, asking the operator once per step.
    pub fn authorize_mutation(&self, step: Option<u64>, what: &str) -> bool {
        if !self.environment.protected {
            return true;
        }
        if self.consent.confirm.as_deref() == Some(self.environment.name.as_str()) {
            return true;
        }
        let key = step.unwrap_or(0);
        if self.state().confirmed_steps.contains(&key) {
            return true;
        }
        if !self.interactive {
            return false;
        }
        let name = &self.environment.name;
        let question = format!(
            "{what} will change the protected environment `{name}`. Type `{name}` to go on"
        );
        let answer = self.ask(&question).unwrap_or_default();
        let confirmed = answer == *name;
        let _ = self.record(
            Event::Prompt {
                step,
                question,
                answer: if confirmed { "confirmed" } else { "declined" }.into(),
                by: operator(),
            },
            false,
        );
        if confirmed {
            self.state().confirmed_steps.insert(key);
        }
        confirmed
    }

    /// Asks the operator on the terminal; `None` without one.
    pub fn ask(&self, question: &str) -> Option<String> {
        if !self.interactive {
            return None;
        }
        self.screen.suspend(|| {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "? {question}: ");
            let _ = stderr.flush();
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).ok()?;
            Some(line.trim().to_owned())
        })
    }
}

/// Who is running the tool, as the transcript records it.
pub fn operator() -> String {
    ["RUNBOOK_OPERATOR", "USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .or_else(user_from_passwd)
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The login name of the process's user, from /etc/passwd, for when no variable says it.
fn user_from_passwd() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").ok()?.uid().to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.get(2) == Some(&uid.as_str())).then(|| fields[0].to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_state_is_made_once_per_run_and_type() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let ctx = RunContext::new(ContextParts {
            mode: Mode::Run,
            environment: Environment {
                name: "test".into(),
                protected: false,
                settings: BTreeMap::new(),
            },
            config: Config::default(),
            params: BTreeMap::new(),
            masker: Masker::new(),
            cancel: CancellationToken::new(),
            runtime: runtime.handle().clone(),
            consent: Consent::default(),
            screen: Screen::silent(),
            runbook_dir: ".".into(),
            runbook_display: "test.rhai".into(),
            writer: None,
            resume: HashMap::new(),
        });
        let first = ctx.shared(|| AtomicU64::new(7));
        first.store(8, Ordering::Relaxed);
        let again = ctx.shared(|| AtomicU64::new(0));
        assert_eq!(again.load(Ordering::Relaxed), 8);
        let other = ctx.shared(|| String::from("another type"));
        assert_eq!(other.as_str(), "another type");
    }
}
