//! The Rhai engine: limits, module resolution, the run model and the bindings, wired to one
//! run's context.

use std::sync::Arc;

use rhai::{Dynamic, Engine};

pub mod analysis;
pub mod binding;
pub mod bridge;
pub mod context;
pub mod convert;
pub mod core;
pub mod diagnostic;
pub mod docs;
pub mod lint;
pub mod lock;
pub mod model;
pub mod resolver;
pub mod run;
pub mod screen;
pub mod signal;

use analysis::EffectTable;
use context::RunContext;
use resolver::Resolver;
use signal::Stop;
use transcript_log::log_line;

/// Limits that end a runaway script with a clear error instead of hanging or exhausting memory.
pub mod limits {
    pub const OPERATIONS: u64 = 50_000_000;
    pub const CALL_LEVELS: usize = 64;
    pub const EXPR_DEPTH: usize = 128;
    pub const STRING_SIZE: usize = 64 * 1024 * 1024;
    pub const ARRAY_SIZE: usize = 1_000_000;
    pub const MAP_SIZE: usize = 100_000;
    pub const MODULES: usize = 256;
}

/// Builds the engine for `ctx`'s run; the resolver and effect table land in `ctx`.
pub fn build(ctx: &Arc<RunContext>, stdlib: Option<std::path::PathBuf>) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(limits::OPERATIONS)
        .set_max_call_levels(limits::CALL_LEVELS)
        .set_max_expr_depths(limits::EXPR_DEPTH, limits::EXPR_DEPTH)
        .set_max_string_size(limits::STRING_SIZE)
        .set_max_array_size(limits::ARRAY_SIZE)
        .set_max_map_size(limits::MAP_SIZE)
        .set_max_modules(limits::MODULES)
        .set_strict_variables(true)
        .set_fail_on_invalid_map_property(true);

    let resolver = Arc::new(Resolver::new(&ctx.runbook_dir, stdlib));
    let _ = ctx.resolver.set(resolver.clone());
    engine.set_module_resolver(SharedResolver(resolver));

    let on_print = ctx.clone();
    engine
        .on_print(move |text| log_line(&on_print, crate::transcript::event::LogLevel::Info, text));
    let on_debug = ctx.clone();
    engine.on_debug(move |text, _, _| {
        log_line(&on_debug, crate::transcript::event::LogLevel::Debug, text)
    });
    let on_progress = ctx.clone();
    engine.on_progress(move |operations| {
        if on_progress.cancel.is_cancelled() {
            return Some(Dynamic::from(Stop::Interrupted));
        }
        if operations % 64 == 0
            && let Some(after) = bridge::deadline_passed()
        {
            return Some(Dynamic::from(Stop::StepTimeout(after)));
        }
        None
    });

    // Rhai ignores a failing `to_string` inside string interpolation and shows the type name
    // instead, so the name itself must say that the value is withheld.
    engine.register_type_with_name::<crate::secret::Secret>("<secret>");
    let mut table = EffectTable::default();
    let core = core::family(ctx);
    table.functions.extend(core.effects);
    table.methods.extend(core.methods);
    engine.register_global_module(core.module.into());
    for family in crate::bindings::families(ctx) {
        table.functions.extend(family.effects);
        table.methods.extend(family.methods);
        engine.register_static_module(family.namespace, family.module.into());
    }
    let _ = ctx.effects.set(table);
    engine
}

/// Lets the engine own a resolver the context also keeps.
struct SharedResolver(Arc<Resolver>);

impl rhai::ModuleResolver for SharedResolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: rhai::Position,
    ) -> Result<rhai::Shared<rhai::Module>, Box<rhai::EvalAltResult>> {
        self.0.resolve(engine, source, path, pos)
    }
}

mod transcript_log {
    use super::context::RunContext;
    use crate::transcript::event::LogLevel;

    /// `print` and `debug` from scripts: into the transcript (and so the screen).
    pub fn log_line(ctx: &RunContext, level: LogLevel, text: &str) {
        let _ = super::core::log(ctx, level, text.to_owned());
    }
}
