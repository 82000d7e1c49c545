//! `runbook`: run operational runbooks written in Rhai and keep a verifiable record of them.

pub mod secret;
pub mod transcript;
