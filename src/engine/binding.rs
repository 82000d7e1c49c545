//! The one path every binding call takes: effect rules, dry-run, confirmation of protected
//! environments, transcript events before and after, and the bridge to async code.

use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::time::Instant;

use rhai::{EvalAltResult, FuncRegistration, Module, Position};
use serde_json::Value;

use super::bridge::{self, Interrupt};
use super::context::RunContext;
use super::signal;
use crate::transcript::event::{Effect, Event, Outcome};

/// A binding family being built: its Rhai module and the effect of each function in it.
pub struct Family {
    pub namespace: &'static str,
    pub module: Module,
    pub effects: HashMap<String, Effect>,
    pub methods: HashMap<String, Effect>,
}

impl Family {
    pub fn new(namespace: &'static str) -> Self {
        Self {
            namespace,
            module: Module::new(),
            effects: HashMap::new(),
            methods: HashMap::new(),
        }
    }

    /// Registers `name` with its parameter list (`"name: type"`, then the return type), its
    /// doc comment lines and its effect; the effect is added to the docs.
    pub fn function<A: 'static, const N: usize, const X: bool, R, const F: bool, FUNC>(
        &mut self,
        name: &str,
        effect: Option<Effect>,
        params: &[&str],
        doc: &[&str],
        func: FUNC,
    ) -> &mut Self
    where
        R: rhai::Variant + Clone,
        FUNC: rhai::RhaiNativeFunc<A, N, X, R, F> + Send + Sync + 'static,
    {
        if let Some(effect) = effect {
            let qualified = match self.namespace {
                "" => name.to_owned(),
                namespace => format!("{namespace}::{name}"),
            };
            self.effects.insert(qualified, effect);
        }
        // Rhai 1.27 fills in the call position of an error from a native function called by
        // a plain name, but not by a module path (`shell::run(...)`), so errors from
        // namespaced bindings would have no line and column; the wrapper adds it.
        let raw = func.into_rhai_function(true, false);
        FuncRegistration::new(name)
            .with_params_info(params)
            .with_comments(comments(doc, effect).unwrap_or_default())
            .set_into_module_raw(
                &mut self.module,
                FUNC::param_types(),
                with_call_position(raw),
            );
        self
    }

    /// Registers a method on a host object (`connection.query(...)`): callable with method
    /// syntax from any script. Its effect counts for every method of that name in plans.
    pub fn method<A: 'static, const N: usize, const X: bool, R, const F: bool, FUNC>(
        &mut self,
        name: &str,
        effect: Option<Effect>,
        params: &[&str],
        doc: &[&str],
        func: FUNC,
    ) -> &mut Self
    where
        R: rhai::Variant + Clone,
        FUNC: rhai::RhaiNativeFunc<A, N, X, R, F> + Send + Sync + 'static,
    {
        if let Some(effect) = effect {
            let known = self.methods.entry(name.to_owned()).or_insert(effect);
            *known = (*known).max(effect);
        }
        FuncRegistration::new(name)
            .in_global_namespace()
            .with_params_info(params)
            .with_comments(comments(doc, effect).unwrap_or_default())
            .set_into_module(&mut self.module, func);
        self
    }
}

/// Whether doc comments are registered: only `runbook docs` shows them, and registering
/// hundreds of them costs every other command start-up time.
static DOCS_WANTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Asks engines built from now on to carry every function's doc comment.
pub fn want_docs() {
    DOCS_WANTED.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// `func`, reporting its errors at the position of the call.
fn with_call_position(func: rhai::RhaiFunc) -> rhai::RhaiFunc {
    use rhai::{Dynamic, NativeCallContext, RhaiFunc, Shared};

    macro_rules! wrapped {
        ($inner:expr) => {{
            let inner = $inner;
            Shared::new(
                move |context: Option<NativeCallContext>, args: &mut [&mut Dynamic]| {
                    let position = context.as_ref().map(NativeCallContext::call_position);
                    inner(context, args).map_err(|mut error| {
                        if let Some(position) = position
                            && error.position().is_none()
                        {
                            error.set_position(position);
                        }
                        error
                    })
                },
            )
        }};
    }
    match func {
        RhaiFunc::Pure {
            func,
            is_pure,
            is_volatile,
            ..
        } => RhaiFunc::Pure {
            func: wrapped!(func),
            has_context: true,
            is_pure,
            is_volatile,
        },
        RhaiFunc::Method {
            func,
            is_pure,
            is_volatile,
            ..
        } => RhaiFunc::Method {
            func: wrapped!(func),
            has_context: true,
            is_pure,
            is_volatile,
        },
        other => other,
    }
}

fn comments(doc: &[&str], effect: Option<Effect>) -> Option<Vec<String>> {
    if !DOCS_WANTED.load(std::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    let mut lines: Vec<String> = doc.iter().map(|line| format!("/// {line}")).collect();
    if let Some(effect) = effect {
        lines.push("///".to_owned());
        lines.push(format!("/// Effect: {}.", effect.as_str()));
    }
    Some(lines)
}

/// One call of a binding, described before it runs.
pub struct Call<'a> {
    pub ctx: &'a RunContext,
    /// The call's number in the transcript, for events it records while it runs.
    pub id: u64,
    pub name: &'static str,
    pub effect: Effect,
    pub target: String,
    pub args: Value,
    /// In a dry run the work still runs: the binding asks the server for a dry run itself.
    pub server_dry_run: bool,
}

/// A binding's own failure, with its causes.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub causes: Vec<String>,
}

impl Failure {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            causes: Vec::new(),
        }
    }

    /// A failure whose causes are the error's source chain.
    pub fn from_error(
        message: impl Into<String>,
        error: &(dyn std::error::Error + 'static),
    ) -> Self {
        let mut causes = vec![error.to_string()];
        let mut source = error.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if causes.last() != Some(&text) {
                causes.push(text);
            }
            source = cause.source();
        }
        Self {
            message: message.into(),
            causes,
        }
    }

    pub fn with_cause(mut self, cause: impl Display) -> Self {
        self.causes.push(cause.to_string());
        self
    }
}

impl<E: std::error::Error + 'static> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::from_error(error.to_string(), &error)
    }
}

impl<'a> Call<'a> {
    pub fn new(
        ctx: &'a RunContext,
        name: &'static str,
        effect: Effect,
        target: impl Into<String>,
    ) -> Self {
        Self {
            ctx,
            id: ctx.next_id(),
            name,
            effect,
            target: target.into(),
            args: Value::Null,
            server_dry_run: false,
        }
    }

    pub fn args(mut self, args: Value) -> Self {
        self.args = args;
        self
    }

    /// Marks a mutation whose server validates it without persisting anything when asked to
    /// (Kubernetes' `dryRun=All`): in a dry run `work` still runs, the binding sends that flag
    /// (it checks `ctx.is_dry_run()`), and the call is recorded as "would run" with the
    /// server's answer as its result.
    pub fn server_dry_run(mut self) -> Self {
        self.server_dry_run = true;
        self
    }

    /// Runs `work` unless the mode says otherwise, in which case `planned` is the result.
    pub fn run<T, Fut>(
        self,
        planned: impl FnOnce() -> T,
        work: Fut,
    ) -> Result<T, Box<EvalAltResult>>
    where
        Fut: Future<Output = Result<T, Failure>>,
    {
        if self.ctx.is_plan() {
            return Ok(planned());
        }
        let frame = bridge::frame();
        let call = self.id;
        let side_effect = self.effect != Effect::Read;
        if side_effect && !self.ctx.is_dry_run() && self.effect == Effect::Mutate {
            let what = format!("{} on {}", self.name, self.target);
            if !self.ctx.authorize_mutation(frame.step, &what) {
                return Err(signal::declined(&self.ctx.environment.name, &what));
            }
        }
        self.record(
            Event::BindingStart {
                call,
                step: frame.step,
                name: self.name.to_owned(),
                effect: self.effect,
                target: self.target.clone(),
                args: self.args.clone(),
            },
            side_effect,
        )?;
        let dry_run = side_effect && self.ctx.is_dry_run();
        if dry_run && !self.server_dry_run {
            self.end(call, Outcome::WouldRun, 0, None)?;
            return Ok(planned());
        }
        let span = tracing::debug_span!("binding", name = self.name, target = %self.target);
        let _entered = span.enter();
        let started = Instant::now();
        let result = bridge::block_on(&self.ctx.runtime, &self.ctx.cancel, work);
        let elapsed = started.elapsed().as_millis() as u64;
        tracing::debug!(
            elapsed_ms = elapsed,
            ok = matches!(result, Ok(Ok(_))),
            "binding call ended"
        );
        match result {
            Ok(Ok(value)) => {
                let outcome = if dry_run {
                    Outcome::WouldRun
                } else {
                    Outcome::Ok
                };
                self.end(call, outcome, elapsed, None)?;
                Ok(value)
            }
            Ok(Err(failure)) => {
                let text = self.describe(&failure);
                self.end(call, Outcome::Error, elapsed, Some(text.clone()))?;
                Err(EvalAltResult::ErrorRuntime(text.into(), Position::NONE).into())
            }
            Err(Interrupt::Cancelled) => {
                self.end(call, Outcome::Interrupted, elapsed, None)?;
                Err(signal::interrupted())
            }
            Err(Interrupt::TimedOut { after }) => {
                self.end(call, Outcome::TimedOut, elapsed, None)?;
                Err(signal::step_timeout(after))
            }
        }
    }

    /// `name on target: message`, then one `caused by:` line per cause; masked.
    fn describe(&self, failure: &Failure) -> String {
        let mut text = format!("{} on {}: {}", self.name, self.target, failure.message);
        for cause in &failure.causes {
            if *cause != failure.message {
                text.push_str("\ncaused by: ");
                text.push_str(cause);
            }
        }
        self.ctx.masker.mask(&text)
    }

    fn end(
        &self,
        call: u64,
        outcome: Outcome,
        duration_ms: u64,
        error: Option<String>,
    ) -> Result<(), Box<EvalAltResult>> {
        self.record(
            Event::BindingEnd {
                call,
                step: bridge::frame().step,
                name: self.name.to_owned(),
                outcome,
                duration_ms,
                error,
            },
            false,
        )
    }

    fn record(&self, event: Event, durable: bool) -> Result<(), Box<EvalAltResult>> {
        self.ctx
            .record(event, durable)
            .map_err(|err| signal::transcript_failed(&err))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;
    use crate::config::{Config, Environment};
    use crate::engine::context::{Consent, ContextParts, Mode};
    use crate::engine::screen::Screen;
    use crate::transcript::{Masker, TranscriptWriter};

    fn dry_run_context(dir: &std::path::Path) -> Arc<RunContext> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let handle = runtime.handle().clone();
        // The runtime must outlive the test's calls; leaking it keeps the handle valid.
        std::mem::forget(runtime);
        let masker = Masker::new();
        let writer = TranscriptWriter::create(&dir.join("t.jsonl"), masker.clone()).unwrap();
        RunContext::new(ContextParts {
            mode: Mode::DryRun,
            environment: Environment {
                name: "test".into(),
                protected: false,
                settings: BTreeMap::new(),
            },
            config: Config::default(),
            params: BTreeMap::new(),
            masker,
            cancel: tokio_util::sync::CancellationToken::new(),
            runtime: handle,
            consent: Consent::default(),
            screen: Screen::silent(),
            runbook_dir: dir.to_owned(),
            runbook_display: "test.rhai".into(),
            writer: Some(writer),
            resume: HashMap::new(),
        })
    }

    fn outcomes(ctx: &RunContext) -> Vec<Outcome> {
        let path = ctx.close_transcript().unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        text.lines()
            .map(|line| serde_json::from_str::<crate::transcript::event::Record>(line).unwrap())
            .filter_map(|record| match record.event {
                Event::BindingEnd { outcome, .. } => Some(outcome),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_dry_run_plans_a_mutation_without_running_it() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dry_run_context(dir.path());
        let ran = AtomicBool::new(false);
        let value = Call::new(&ctx, "test::change", Effect::Mutate, "thing")
            .run(|| "planned", async {
                ran.store(true, Ordering::SeqCst);
                Ok("done")
            })
            .unwrap();
        assert_eq!(value, "planned");
        assert!(!ran.load(Ordering::SeqCst));
        assert_eq!(outcomes(&ctx), vec![Outcome::WouldRun]);
    }

    #[test]
    fn a_server_side_dry_run_runs_the_work_and_records_would_run() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dry_run_context(dir.path());
        let value = Call::new(&ctx, "test::change", Effect::Mutate, "thing")
            .server_dry_run()
            .run(|| "planned", async { Ok("as the server would have it") })
            .unwrap();
        assert_eq!(value, "as the server would have it");
        assert_eq!(outcomes(&ctx), vec![Outcome::WouldRun]);
    }

    #[test]
    fn a_failed_server_side_dry_run_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = dry_run_context(dir.path());
        let result = Call::new(&ctx, "test::change", Effect::Mutate, "thing")
            .server_dry_run()
            .run(|| (), async { Err(Failure::new("rejected")) });
        let error = result.unwrap_err().to_string();
        assert!(error.contains("test::change on thing: rejected"), "{error}");
        assert_eq!(outcomes(&ctx), vec![Outcome::Error]);
    }
}
