//! What can go wrong in the Redis bindings, each variant saying what failed.

/// A Redis binding's failure; the binding and target are added by the call path.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("invalid Redis URL (expected redis://[user:password@]host:port[/db] or rediss://)")]
    InvalidUrl {
        #[source]
        source: ::redis::RedisError,
    },
    #[error("cannot connect")]
    ConnectFailed {
        #[source]
        source: ::redis::RedisError,
    },
    #[error("`{command}` failed")]
    CommandFailed {
        command: String,
        #[source]
        source: ::redis::RedisError,
    },
    #[error("unexpected reply to `{command}`: {reply}")]
    UnexpectedReply { command: String, reply: String },
    #[error("not connected: the connection was made while planning")]
    NotConnected,
    #[error("no cluster node given: pass one URL or an array of them")]
    NoNodes,
    #[error("no cluster node answered (tried {tried})")]
    NoNodeAnswered {
        tried: String,
        #[source]
        source: ::redis::RedisError,
    },
    #[error("a {0} cannot be stored in Redis: pass text, a number or a boolean")]
    BadValue(String),
}
