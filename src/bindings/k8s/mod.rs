//! `k8s::`: the Kubernetes API through kube-rs, with one client per run made from the
//! kubeconfig context the environment names (or `--context`, or the pod's service account).
//! Any kind by name, pods, logs, events, exec, rollouts and access reviews; mutations run as
//! server-side dry runs under `--dry-run`.

use std::future::Future;
use std::sync::Arc;

use serde_json::Value;

use crate::engine::binding::{Call, Failure, Family};
use crate::engine::bridge;
use crate::engine::context::RunContext;
use crate::transcript::event::{Effect, Event, Stream};

mod access;
mod client;
mod discovery;
mod dynamic;
mod error;
mod exec;
mod objects;
mod options;
mod pods;
mod rollout;
mod secret_source;

pub use secret_source::secret_fields;

use client::{Cluster, Connection};
use options::Outcome;

pub fn family(ctx: &Arc<RunContext>) -> Family {
    let k8s = K8s::new(ctx);
    let mut family = Family::new("k8s");
    dynamic::register(&mut family, &k8s);
    pods::register(&mut family, &k8s);
    exec::register(&mut family, &k8s);
    rollout::register(&mut family, &k8s);
    access::register(&mut family, &k8s);
    family
}

/// What every `k8s::` function works with: the run and its one cluster connection.
#[derive(Clone)]
pub struct K8s {
    pub ctx: Arc<RunContext>,
    pub cluster: Arc<Cluster>,
}

impl K8s {
    pub fn new(ctx: &Arc<RunContext>) -> Self {
        Self {
            ctx: ctx.clone(),
            cluster: ctx.shared(|| Cluster::new(requested_context(ctx))),
        }
    }

    /// A call that reads: it runs in dry runs too.
    pub fn read<T>(
        &self,
        name: &'static str,
        target: String,
        args: Value,
        planned: impl FnOnce() -> T,
        work: impl Future<Output = Result<T, Failure>>,
    ) -> Outcome<T> {
        Call::new(&self.ctx, name, Effect::Read, target)
            .args(args)
            .run(planned, work)
    }

    /// A call that writes. In a dry run it still goes to the server, which the binding asks
    /// for a dry run (`self.dry_run()`); the transcript then shows what the server would
    /// have stored, as `show` renders the answer.
    pub fn mutate<T>(
        &self,
        name: &'static str,
        target: String,
        args: Value,
        planned: impl FnOnce() -> T,
        show: impl FnOnce(&T) -> Value,
        work: impl Future<Output = Result<T, Failure>>,
    ) -> Outcome<T> {
        let call = Call::new(&self.ctx, name, Effect::Mutate, target)
            .args(args)
            .server_dry_run();
        let (id, step) = (call.id, bridge::frame().step);
        let ctx = &self.ctx;
        call.run(planned, async move {
            let value = work.await?;
            if ctx.is_dry_run() {
                let line = format!("server dry run, would be: {}", show(&value));
                output(ctx, id, step, line);
            }
            Ok(value)
        })
    }

    /// Whether writes must carry the server's dry-run flag.
    pub fn dry_run(&self) -> bool {
        self.ctx.is_dry_run()
    }
}

/// The kubeconfig context the environment names (`--context` lands there too).
pub fn requested_context(ctx: &RunContext) -> Option<String> {
    let setting = ctx.environment.settings.get("context")?;
    setting.as_str().map(str::to_owned)
}

/// One line of a call's output into the transcript (shown with `-v`).
pub fn output(ctx: &RunContext, call: u64, step: Option<u64>, line: String) {
    let event = Event::Output {
        step,
        call,
        stream: Stream::Stdout,
        line,
    };
    let _ = ctx.record(event, false);
}

/// The namespace to use: the given one, or the context's default namespace for `""`.
pub fn namespace_or_default(connection: &Connection, namespace: &str) -> String {
    if namespace.is_empty() {
        connection.client.default_namespace().to_owned()
    } else {
        namespace.to_owned()
    }
}
