//! `runbook`: run operational runbooks written in Rhai and keep a verifiable record of them.

pub mod bindings;
pub mod cli;
pub mod config;
pub mod engine;
pub mod logging;
pub mod secret;
pub mod transcript;
