//! What can go wrong between a runbook and the Kubernetes API, each naming the context and the
//! API server involved so that an operator knows which cluster answered (or did not).

use kube::config::KubeconfigError;

#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    #[error(
        "no kubeconfig (KUBECONFIG or ~/.kube/config) and not running inside a cluster (in-cluster: {in_cluster})"
    )]
    NoConfig {
        in_cluster: String,
        #[source]
        source: Box<KubeconfigError>,
    },
    #[error("cannot read the kubeconfig for context `{context}`")]
    KubeconfigUnreadable {
        context: String,
        #[source]
        source: Box<KubeconfigError>,
    },
    #[error(
        "the kubeconfig sets no current-context: name one with --context or the environment's `context` setting"
    )]
    NoContext,
    #[error("no context `{context}` in the kubeconfig (known: {known})")]
    UnknownContext { context: String, known: String },
    #[error("cannot use context `{context}` (API server {server})")]
    ContextUnusable {
        context: String,
        server: String,
        #[source]
        source: Box<KubeconfigError>,
    },
    #[error("cannot make a client for context `{context}` (API server {server})")]
    ClientUnusable {
        context: String,
        server: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{action}: no answer from the API server {server} (context `{context}`)")]
    Unreachable {
        action: String,
        context: String,
        server: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{action}: {reason}: {message} (API server {server}, context `{context}`)")]
    Refused {
        action: String,
        reason: String,
        message: String,
        code: u16,
        context: String,
        server: String,
    },
    #[error(
        "{action}: conflict: the object changed since it was read (someone else wrote it meanwhile); nothing was written: read it again and decide anew (API server {server}, context `{context}`)"
    )]
    Conflict {
        action: String,
        context: String,
        server: String,
    },
    #[error("the API server {server} (context `{context}`) serves no kind `{kind}`{hint}")]
    UnknownKind {
        kind: String,
        hint: String,
        context: String,
        server: String,
    },
}

impl K8sError {
    /// Whether the API server answered 404.
    pub fn is_not_found(&self) -> bool {
        matches!(self, K8sError::Refused { code: 404, .. })
    }
}
