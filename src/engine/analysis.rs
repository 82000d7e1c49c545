//! Static effects of a step: which binding calls its body can reach, read from the AST
//! without running anything. `runbook plan` shows them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use rhai::{AST, ASTNode, Expr, FnPtr, Stmt};

use super::context::RunContext;
use crate::transcript::event::Effect;

/// The declared effect of every host function, by qualified name (`shell::run`), and of every
/// method by name (`execute`).
#[derive(Debug, Default, Clone)]
pub struct EffectTable {
    pub functions: HashMap<String, Effect>,
    pub methods: HashMap<String, Effect>,
}

/// The effects a closure's body may have, through the script functions it calls.
pub fn effects_of(ctx: &RunContext, body: &FnPtr) -> BTreeSet<Effect> {
    let Some(table) = ctx.effects.get() else {
        return BTreeSet::new();
    };
    let mut asts: Vec<Arc<AST>> = ctx.ast.get().cloned().into_iter().collect();
    if let Some(resolver) = ctx.resolver.get() {
        asts.extend(resolver.compiled().into_iter().map(|(_, ast)| ast));
    }
    let mut walker = Walker {
        table,
        asts: &asts,
        seen: HashSet::new(),
        effects: BTreeSet::new(),
    };
    walker.function(body.fn_name());
    walker.effects
}

struct Walker<'a> {
    table: &'a EffectTable,
    asts: &'a [Arc<AST>],
    seen: HashSet<String>,
    effects: BTreeSet<Effect>,
}

impl Walker<'_> {
    /// Walks every script function called `name` (any arity, in any loaded AST).
    fn function(&mut self, name: &str) {
        if !self.seen.insert(name.to_owned()) {
            return;
        }
        let mut calls = Vec::new();
        for ast in self.asts {
            // Rhai 1.27's `clone_functions_only_filtered` copies every function when the copy
            // starts empty (its `merge_filtered` skips the filter then), so copy and retain.
            let mut only = ast.clone_functions_only();
            only.retain_functions(|_, _, candidate, _| candidate == name);
            collect_calls(&only, &mut calls);
        }
        for called in calls {
            self.call(called);
        }
    }

    fn call(&mut self, called: Called) {
        match called {
            Called::Function { namespace, name } => {
                let qualified = if namespace.is_empty() {
                    name.clone()
                } else {
                    format!("{namespace}::{name}")
                };
                match self.table.functions.get(&qualified) {
                    Some(effect) => {
                        self.effects.insert(*effect);
                    }
                    None => self.function(&name),
                }
            }
            Called::Method(name) => {
                if let Some(effect) = self.table.methods.get(&name) {
                    self.effects.insert(*effect);
                }
            }
            Called::Closure(name) => self.function(&name),
            Called::Declared(effect) => {
                self.effects.insert(effect);
            }
        }
    }
}

enum Called {
    Function {
        namespace: String,
        name: String,
    },
    /// A binding call whose options map says `effect: "..."` in so many words.
    Declared(Effect),
    Method(String),
    Closure(String),
}

/// The effect an options map literal declares, e.g. `#{effect: "read"}`.
fn declared_effect(arg: &Expr) -> Option<Effect> {
    match arg {
        Expr::Map(map, _) => {
            let (_, value) = map.0.iter().find(|(key, _)| key.name == "effect")?;
            match value {
                Expr::StringConstant(text, _) => Effect::parse(text),
                _ => None,
            }
        }
        Expr::DynamicConstant(value, _) => {
            let map = value.clone().try_cast::<rhai::Map>()?;
            Effect::parse(&map.get("effect")?.clone().into_string().ok()?)
        }
        _ => None,
    }
}

/// The calls written in `ast`'s function bodies; closures they create are followed later.
fn collect_calls(ast: &AST, calls: &mut Vec<Called>) {
    ast.walk(&mut |nodes: &[ASTNode]| {
        match nodes.last() {
            Some(ASTNode::Stmt(Stmt::FnCall(call, _)))
            | Some(ASTNode::Expr(Expr::FnCall(call, _)))
                if !call.is_operator_call() =>
            {
                let namespace = call.namespace.to_string();
                let name = call.name.to_string();
                match call.args.last().and_then(declared_effect) {
                    Some(effect) if !namespace.is_empty() => calls.push(Called::Declared(effect)),
                    _ => calls.push(Called::Function { namespace, name }),
                }
            }
            Some(ASTNode::Expr(Expr::MethodCall(call, _))) => {
                calls.push(Called::Method(call.name.to_string()));
            }
            Some(ASTNode::Expr(Expr::DynamicConstant(value, _))) => {
                if let Some(ptr) = value.clone().try_cast::<FnPtr>() {
                    calls.push(Called::Closure(ptr.fn_name().to_owned()));
                }
            }
            Some(ASTNode::Expr(Expr::StringConstant(text, _))) if text.starts_with("anon$") => {
                calls.push(Called::Closure(text.to_string()));
            }
            _ => {}
        }
        true
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn effects(script: &str, function: &str) -> BTreeSet<Effect> {
        let engine = rhai::Engine::new();
        let ast = engine.compile(script).unwrap();
        let mut table = EffectTable::default();
        table.functions.insert("shell::run".into(), Effect::Mutate);
        table.functions.insert("http::get".into(), Effect::Read);
        table.methods.insert("execute".into(), Effect::Mutate);
        let asts = vec![Arc::new(ast)];
        let mut walker = Walker {
            table: &table,
            asts: &asts,
            seen: HashSet::new(),
            effects: BTreeSet::new(),
        };
        walker.function(function);
        walker.effects
    }

    #[test]
    fn a_step_sees_only_its_own_calls_and_the_functions_it_calls() {
        let script = r#"
            fn deploy() { shell::run(["kubectl"]) }
            fn probe() { http::get("https://x") }
        "#;
        assert_eq!(effects(script, "deploy"), BTreeSet::from([Effect::Mutate]));
        let script = r#"
            fn outer() { inner() }
            fn inner() { let c = 1; c.execute("x"); http::get("y") }
        "#;
        let found = effects(script, "outer");
        assert!(
            found.contains(&Effect::Mutate) && found.contains(&Effect::Read),
            "{found:?}"
        );
    }
}
