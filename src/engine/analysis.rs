//! Static effects of a step: which binding calls its body can reach, read from the AST
//! without running anything. `runbook plan` shows them.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use rhai::{AST, ASTNode, Expr, FnPtr, Position};

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
    /// Walks every script function called `name` (any arity, in any loaded AST): the calls
    /// written between the start and end of its body, nested closures included.
    fn function(&mut self, name: &str) {
        if !self.seen.insert(name.to_owned()) {
            return;
        }
        let mut calls = Vec::new();
        for ast in self.asts {
            for def in ast.iter_fn_def().filter(|def| def.name == name) {
                let (start, end) = (def.body.start_position(), def.body.end_position());
                collect_calls(ast, start, end, &mut calls);
            }
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
        }
    }
}

enum Called {
    Function { namespace: String, name: String },
    Method(String),
    Closure(String),
}

fn collect_calls(ast: &AST, start: Position, end: Position, calls: &mut Vec<Called>) {
    let within = |position: Position| {
        position_key(position).is_some_and(|p| {
            Some(p) >= position_key(start)
                && (position_key(end).is_none() || Some(p) <= position_key(end))
        })
    };
    ast.walk(&mut |nodes: &[ASTNode]| {
        if let Some(ASTNode::Expr(expr)) = nodes.last()
            && within(expr.position())
        {
            match expr {
                Expr::FnCall(call, _) => {
                    calls.push(Called::Function {
                        namespace: call.namespace.to_string(),
                        name: call.name.to_string(),
                    });
                }
                Expr::MethodCall(call, _) => calls.push(Called::Method(call.name.to_string())),
                Expr::DynamicConstant(value, _) => {
                    if let Some(ptr) = value.clone().try_cast::<FnPtr>() {
                        calls.push(Called::Closure(ptr.fn_name().to_owned()));
                    }
                }
                Expr::StringConstant(text, _) if text.starts_with("anon$") => {
                    calls.push(Called::Closure(text.to_string()));
                }
                _ => {}
            }
        }
        true
    });
}

fn position_key(position: Position) -> Option<(usize, usize)> {
    Some((position.line()?, position.position().unwrap_or(0)))
}
