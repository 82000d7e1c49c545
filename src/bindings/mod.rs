//! The binding families scripts reach by namespace (`shell::run`, ...). Each module builds one
//! family; `families` is the one list they are registered from.

use std::sync::Arc;

use crate::engine::binding::Family;
use crate::engine::context::RunContext;

pub mod alert;
pub mod aws;
pub mod db;
pub mod http;
pub mod jwt;
pub mod k8s;
pub mod options;
pub mod redis;
pub mod secret;
pub mod secrets;
pub mod secure_http;
pub mod settings;
pub mod shell;
pub mod tls;
pub mod vault;
pub mod ws;

/// Every binding family, in the order `runbook docs` lists them.
pub fn families(ctx: &Arc<RunContext>) -> Vec<Family> {
    vec![
        shell::family(ctx),
        http::family(ctx),
        tls::family(ctx),
        ws::family(ctx),
        jwt::family(ctx),
        k8s::family(ctx),
        db::family(ctx),
        redis::family(ctx),
        secrets::family(ctx),
        vault::family(ctx),
        aws::family(ctx),
        alert::family(ctx),
    ]
}
