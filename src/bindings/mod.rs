//! The binding families scripts reach by namespace (`shell::run`, ...). Each module builds one
//! family; `families` is the one list they are registered from.

use std::sync::Arc;

use crate::engine::binding::Family;
use crate::engine::context::RunContext;

pub mod k8s;
pub mod secret;
pub mod shell;

/// Every binding family, in the order `runbook docs` lists them.
pub fn families(ctx: &Arc<RunContext>) -> Vec<Family> {
    vec![shell::family(ctx), k8s::family(ctx)]
}
