//! `runbook check` and `runbook plan`: what can be known about a runbook without running it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use rhai::{AST, ASTNode, Expr, Position, Stmt};
use tokio_util::sync::CancellationToken;

use super::context::{Consent, ContextParts, Mode, PlannedStep, RunContext};
use super::diagnostic::{Diagnostic, Location};
use super::resolver::Resolver;
use super::run::{StartError, compile_source, prepare};
use super::screen::Screen;
use crate::transcript::Masker;

/// Functions the language itself provides, which no module registers.
const LANGUAGE_FUNCTIONS: &[&str] = &[
    "print",
    "debug",
    "type_of",
    "Fn",
    "call",
    "curry",
    "is_def_var",
    "is_def_fn",
    "is_shared",
    "eval",
    "throw",
];

/// What a plan found.
pub struct Plan {
    pub environment: String,
    pub steps: Vec<PlannedStep>,
    pub params: Vec<super::context::DeclaredParam>,
    pub duplicates: Vec<(Vec<String>, String)>,
    /// The walk stopped early: the runbook needs real values at its top level.
    pub incomplete: Option<String>,
}

/// Walks the runbook in plan mode: sections run, step bodies and bindings do not.
pub fn plan(
    runbook: &Path,
    config: Option<&Path>,
    environment: Option<&str>,
    params: &[(String, String)],
    runtime: &tokio::runtime::Handle,
) -> Result<Plan, StartError> {
    let prepared = prepare(runbook, config, environment, params)?;
    let ctx = plan_context(runbook, &prepared, runtime);
    let engine = super::build(&ctx, Resolver::find_stdlib(runbook));
    let ast = Arc::new(compile_source(
        &engine,
        &prepared.source,
        &prepared.display,
    )?);
    let _ = ctx.ast.set(ast.clone());
    let result = engine.run_ast(&ast);
    let incomplete = result
        .err()
        .map(|err| Diagnostic::from_eval(&err, &prepared.display).render());
    let mut state = ctx.state();
    Ok(Plan {
        environment: prepared.environment.name.clone(),
        steps: std::mem::take(&mut state.plan),
        params: std::mem::take(&mut state.declared_params),
        duplicates: std::mem::take(&mut state.duplicates),
        incomplete,
    })
}

fn plan_context(
    runbook: &Path,
    prepared: &super::run::Prepared,
    runtime: &tokio::runtime::Handle,
) -> Arc<RunContext> {
    let dir = std::path::absolute(runbook)
        .ok()
        .and_then(|p| p.parent().map(Path::to_owned))
        .unwrap_or_else(|| ".".into());
    RunContext::new(ContextParts {
        mode: Mode::Plan,
        environment: prepared.environment.clone(),
        config: crate::config::Config::default(),
        params: prepared.params.clone(),
        masker: Masker::new(),
        cancel: CancellationToken::new(),
        runtime: runtime.clone(),
        consent: Consent::default(),
        screen: Screen::silent(),
        runbook_dir: dir,
        runbook_display: prepared.display.clone(),
        writer: None,
        resume: HashMap::new(),
    })
}

/// Everything wrong with a runbook that can be found without running it: syntax errors,
/// unknown functions and namespaces, imports that do not resolve, duplicate titles.
pub fn check(
    runbook: &Path,
    runtime: &tokio::runtime::Handle,
) -> Result<(Vec<Diagnostic>, Vec<Diagnostic>), StartError> {
    let prepared = prepare(runbook, None, None, &[])
        .or_else(|_| prepare(runbook, Some(Path::new("/dev/null")), None, &[]))?;
    let ctx = plan_context(runbook, &prepared, runtime);
    let engine = super::build(&ctx, Resolver::find_stdlib(runbook));
    let ast = match compile_source(&engine, &prepared.source, &prepared.display) {
        Ok(ast) => Arc::new(ast),
        Err(StartError::Script(diagnostic)) => return Ok((vec![*diagnostic], Vec::new())),
        Err(other) => return Err(other),
    };
    let resolver = ctx.resolver.get().cloned();
    let known = Known::from_engine(&engine);
    let mut errors = Vec::new();
    let mut checked = HashSet::new();
    if let Some(resolver) = &resolver {
        check_ast(
            &engine,
            resolver,
            &known,
            &ast,
            &prepared.display,
            &mut errors,
            &mut checked,
        );
    }
    let mut warnings = Vec::new();
    let _ = ctx.ast.set(ast.clone());
    let walked = engine.run_ast(&ast);
    if errors.is_empty()
        && let Err(err) = walked
    {
        let mut diagnostic = Diagnostic::from_eval(&err, &prepared.display);
        diagnostic.message = format!(
            "could not walk the whole runbook without running it: {}",
            diagnostic.message
        );
        warnings.push(diagnostic);
    }
    {
        for (sections, title) in std::mem::take(&mut ctx.state().duplicates) {
            let place = if sections.is_empty() {
                "at the top level".to_owned()
            } else {
                format!("in section `{}`", sections.join(" › "))
            };
            let location = find_title(&prepared.source, &prepared.display, &title);
            errors.push(
                Diagnostic::new(format!("duplicate title `{title}` {place}"))
                    .at(location)
                    .hint("titles identify steps in reports and when resuming a run; make each one unique within its section"),
            );
        }
    }
    Ok((errors, warnings))
}

/// The names a script may call.
struct Known {
    functions: HashSet<String>,
    namespaces: HashSet<String>,
}

impl Known {
    fn from_engine(engine: &rhai::Engine) -> Self {
        let mut functions: HashSet<String> =
            LANGUAGE_FUNCTIONS.iter().map(|s| (*s).to_owned()).collect();
        let mut namespaces = HashSet::new();
        for signature in engine.gen_fn_signatures(true) {
            let name = signature.split('(').next().unwrap_or_default().trim();
            let name = name.rsplit(' ').next().unwrap_or(name);
            if let Some((namespace, _)) = name.rsplit_once("::") {
                namespaces.insert(namespace.to_owned());
            }
            functions.insert(name.to_owned());
        }
        Self {
            functions,
            namespaces,
        }
    }

    fn similar(&self, name: &str) -> Option<&str> {
        self.functions
            .iter()
            .filter(|known| known.contains("::") == name.contains("::"))
            .map(|known| (edit_distance(known, name), known))
            .filter(|(distance, _)| *distance <= 2)
            .min()
            .map(|(_, known)| known.as_str())
    }
}

fn check_ast(
    engine: &rhai::Engine,
    resolver: &Resolver,
    known: &Known,
    ast: &AST,
    file: &str,
    errors: &mut Vec<Diagnostic>,
    checked: &mut HashSet<String>,
) {
    if !checked.insert(file.to_owned()) {
        return;
    }
    let local: HashSet<String> = ast.iter_functions().map(|f| f.name.to_owned()).collect();
    let mut aliases: HashMap<String, BTreeSet<String>> = HashMap::new();
    for (path, alias, position) in imports(ast) {
        match resolver.compile(engine, &path) {
            Ok(module) => {
                let name = module.source().unwrap_or(&path).to_owned();
                check_ast(engine, resolver, known, &module, &name, errors, checked);
                if !alias.is_empty() {
                    aliases.insert(
                        alias,
                        module.iter_functions().map(|f| f.name.to_owned()).collect(),
                    );
                }
            }
            Err(message) => {
                let message = first_line(&message);
                let message = match message.starts_with("cannot import") {
                    true => message.to_owned(),
                    false => format!("cannot import `{path}`: {message}"),
                };
                errors.push(Diagnostic::new(message).at(location(file, position)));
            }
        }
    }
    for (namespace, name, position) in calls(ast) {
        if let Some(problem) = unknown_call(known, &local, &aliases, &namespace, &name) {
            errors.push(problem.at(location(file, position)));
        }
    }
}

fn unknown_call(
    known: &Known,
    local: &HashSet<String>,
    aliases: &HashMap<String, BTreeSet<String>>,
    namespace: &str,
    name: &str,
) -> Option<Diagnostic> {
    if namespace.is_empty() {
        if local.contains(name) || known.functions.contains(name) || !is_identifier(name) {
            return None;
        }
        let diagnostic = Diagnostic::new(format!("function `{name}` does not exist"));
        return Some(match known.similar(name) {
            Some(similar) => diagnostic.hint(format!("did you mean `{similar}`?")),
            None => diagnostic.hint("`runbook docs` lists every host function"),
        });
    }
    if let Some(functions) = aliases.get(namespace) {
        return (!functions.contains(name))
            .then(|| Diagnostic::new(format!("module `{namespace}` has no function `{name}`")));
    }
    let qualified = format!("{namespace}::{name}");
    if known.functions.contains(&qualified) {
        return None;
    }
    if !known.namespaces.contains(namespace) {
        return Some(Diagnostic::new(format!("unknown namespace `{namespace}` in `{qualified}`")).hint("import a module with `import \"name\" as alias;`, or see `runbook docs` for the host namespaces"));
    }
    let diagnostic = Diagnostic::new(format!("function `{qualified}` does not exist"));
    Some(match known.similar(&qualified) {
        Some(similar) => diagnostic.hint(format!("did you mean `{similar}`?")),
        None => diagnostic.hint(format!("`runbook docs {namespace}` lists its functions")),
    })
}

fn imports(ast: &AST) -> Vec<(String, String, Position)> {
    let mut found = Vec::new();
    ast.walk(&mut |nodes: &[ASTNode]| {
        if let Some(ASTNode::Stmt(Stmt::Import(import, position))) = nodes.last()
            && let (Expr::StringConstant(path, _), alias) = &**import
        {
            found.push((path.to_string(), alias.name.to_string(), *position));
        }
        true
    });
    found
}

fn calls(ast: &AST) -> Vec<(String, String, Position)> {
    let mut found = Vec::new();
    ast.walk(&mut |nodes: &[ASTNode]| {
        let call = match nodes.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, position))) => Some((call, position)),
            Some(ASTNode::Stmt(Stmt::FnCall(call, position))) => Some((call, position)),
            _ => None,
        };
        if let Some((call, position)) = call
            && !call.is_operator_call()
        {
            found.push((call.namespace.to_string(), call.name.to_string(), *position));
        }
        true
    });
    found
}

fn is_identifier(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_alphanumeric() || c == '_')
        && !name.starts_with("anon$")
}

fn location(file: &str, position: Position) -> Option<Location> {
    Some(Location {
        file: file.to_owned(),
        line: position.line()?,
        column: position.position().unwrap_or(1),
    })
}

/// The second place a title appears as a string literal, where a duplicate was written.
fn find_title(source: &str, file: &str, title: &str) -> Option<Location> {
    let needle = format!("\"{title}\"");
    let mut places = source
        .lines()
        .enumerate()
        .filter_map(|(i, line)| line.find(&needle).map(|col| (i + 1, col + 1)));
    let (line, column) = places.nth(1)?;
    Some(Location {
        file: file.to_owned(),
        line,
        column,
    })
}

fn first_line(text: &str) -> &str {
    text.lines()
        .next()
        .unwrap_or(text)
        .trim_start_matches("error: ")
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb {
                previous
            } else {
                1 + previous.min(row[j]).min(row[j + 1])
            };
            previous = current;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_changes() {
        assert_eq!(edit_distance("check", "chek"), 1);
        assert_eq!(edit_distance("shell::run", "shell::rnu"), 2);
        assert_eq!(edit_distance("step", "step"), 0);
    }
}
