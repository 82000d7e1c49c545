//! Module resolution: a runbook imports from its own folder and from `stdlib/`, nothing else.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use rhai::{AST, Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

type SharedModule = Shared<Module>;

include!(concat!(env!("OUT_DIR"), "/stdlib.rs"));

/// Resolves `import "name"` to `<runbook folder>/name.rhai`, then `<stdlib>/name.rhai`, then
/// the copy of the standard library built into the binary.
pub struct Resolver {
    roots: Vec<PathBuf>,
    modules: Mutex<HashMap<String, SharedModule>>,
    asts: Mutex<HashMap<String, Arc<AST>>>,
}

impl Resolver {
    pub fn new(runbook_dir: &Path, stdlib: Option<PathBuf>) -> Self {
        let mut roots = vec![runbook_dir.to_owned()];
        roots.extend(stdlib);
        Self {
            roots,
            modules: Mutex::default(),
            asts: Mutex::default(),
        }
    }

    /// The stdlib folder for a runbook: `RUNBOOK_STDLIB`, else a `stdlib/` folder beside the
    /// runbook or in a folder above it.
    pub fn find_stdlib(runbook: &Path) -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("RUNBOOK_STDLIB") {
            return Some(PathBuf::from(dir));
        }
        crate::config::find_upwards(runbook, "stdlib").filter(|p| p.is_dir())
    }

    /// Where `path` would be read from, or why it cannot be imported.
    pub fn locate(&self, path: &str) -> Result<Source, String> {
        let relative = checked_relative(path)?;
        for root in &self.roots {
            let candidate = root.join(&relative);
            if candidate.is_file() {
                return Ok(Source::File(display_path(&candidate)));
            }
        }
        let name = relative.to_string_lossy().replace('\\', "/");
        if let Some((_, text)) = EMBEDDED_STDLIB.iter().find(|(file, _)| *file == name) {
            return Ok(Source::Embedded(format!("<stdlib>/{name}"), text));
        }
        let searched: Vec<String> = self.roots.iter().map(|r| r.display().to_string()).collect();
        Err(format!(
            "module `{path}` not found (looked in {})",
            searched.join(", ")
        ))
    }

    /// Compiles the module at `path` (cached), for the linter and the planner.
    pub fn compile(&self, engine: &Engine, path: &str) -> Result<Arc<AST>, String> {
        let source = self.locate(path)?;
        let key = source.name().to_owned();
        if let Some(ast) = self.lock_asts().get(&key) {
            return Ok(ast.clone());
        }
        let text = source
            .text()
            .map_err(|err| format!("cannot read {key}: {err}"))?;
        let mut ast = engine
            .compile(&text)
            .map_err(|err| super::diagnostic::Diagnostic::from_parse(&err, &key).render())?;
        ast.set_source(key.as_str());
        let ast = Arc::new(ast);
        self.lock_asts().insert(key, ast.clone());
        Ok(ast)
    }

    /// Every module compiled so far, by the name it is shown under.
    pub fn compiled(&self) -> Vec<(String, Arc<AST>)> {
        self.lock_asts()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn lock_asts(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<AST>>> {
        self.asts
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Where a module's text comes from.
pub enum Source {
    File(String),
    Embedded(String, &'static str),
}

impl Source {
    pub fn name(&self) -> &str {
        match self {
            Source::File(name) | Source::Embedded(name, _) => name,
        }
    }

    fn text(&self) -> std::io::Result<String> {
        match self {
            Source::File(path) => std::fs::read_to_string(path),
            Source::Embedded(_, text) => Ok((*text).to_owned()),
        }
    }
}

impl ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<SharedModule, Box<EvalAltResult>> {
        // Rhai replaces the text of `ErrorModuleNotFound` with the bare path, which would lose
        // where we looked and why; a runtime error keeps it.
        let not_found = |message: String| -> Box<EvalAltResult> {
            EvalAltResult::ErrorRuntime(message.into(), pos).into()
        };
        let key = self.locate(path).map_err(not_found)?.name().to_owned();
        let cached = self
            .modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .cloned();
        if let Some(module) = cached {
            return Ok(module);
        }
        let ast = self.compile(engine, path).map_err(not_found)?;
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine)
            .map_err(|err| EvalAltResult::ErrorInModule(key.clone(), err, pos))?;
        let module: SharedModule = module.into();
        self.modules
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, module.clone());
        Ok(module)
    }
}

/// `path` with `.rhai` added, refused when it is absolute or climbs out of its root.
fn checked_relative(path: &str) -> Result<PathBuf, String> {
    let mut relative = PathBuf::from(path);
    if relative.extension().is_none() {
        relative.set_extension("rhai");
    }
    let escapes = relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if escapes || path.is_empty() {
        return Err(format!(
            "cannot import `{path}`: runbooks import modules by a name relative to their own \
             folder or stdlib/ (no absolute paths, no `..`)"
        ));
    }
    Ok(relative)
}

/// A path as it should appear in messages: relative to the working folder when inside it.
pub fn display_path(path: &Path) -> String {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
    let cwd = std::env::current_dir().ok();
    match cwd
        .as_deref()
        .and_then(|cwd| absolute.strip_prefix(cwd).ok())
    {
        Some(relative) => relative.display().to_string(),
        None => absolute.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_paths_that_leave_the_allowed_folders() {
        assert!(checked_relative("../secrets").is_err());
        assert!(checked_relative("/etc/passwd").is_err());
        assert!(checked_relative("a/../../b").is_err());
        assert_eq!(checked_relative("web").unwrap(), PathBuf::from("web.rhai"));
        assert_eq!(
            checked_relative("lib/k8s.rhai").unwrap(),
            PathBuf::from("lib/k8s.rhai")
        );
    }
}
