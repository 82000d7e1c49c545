//! What the web tests share: certificates, servers on loopback, and a runner for runbooks.

pub mod pki;
pub mod runner;
pub mod servers;
