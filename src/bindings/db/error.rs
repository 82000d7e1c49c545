//! What can go wrong in the database bindings, each variant saying what failed.

/// A database binding's failure; the binding and target are added by the call path.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(
        "unsupported URL scheme `{scheme}` (known: postgres://, postgresql://, mysql://, mariadb://, sqlite:)"
    )]
    UnsupportedScheme { scheme: String },
    #[error("invalid {driver} URL")]
    InvalidUrl {
        driver: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "refusing a connection to {host} that may travel in plaintext ({asked}); put {explicit} in the URL to accept plaintext, or {secure}"
    )]
    PlaintextRefused {
        host: String,
        asked: String,
        explicit: &'static str,
        secure: &'static str,
    },
    #[error("cannot connect")]
    ConnectFailed {
        #[source]
        source: SqlCause,
    },
    #[error("query failed")]
    QueryFailed {
        #[source]
        source: SqlCause,
    },
    #[error("the query returned no row")]
    NoRow,
    #[error(
        "cannot read column `{column}` of type {type_name}; cast it in the SQL (e.g. `{column}::text`)"
    )]
    Unreadable {
        column: String,
        type_name: String,
        #[source]
        source: SqlCause,
    },
    #[error("cannot pass parameter {index}: {reason}")]
    BadParameter { index: usize, reason: String },
    #[error("the transaction has already ended: use `tx` only inside its closure")]
    TransactionEnded,
    #[error("{what} is not available for {driver}")]
    Unsupported {
        what: &'static str,
        driver: &'static str,
    },
    #[error("{0}")]
    NotInstalled(String),
    #[error("none of {tools} is installed; install {package} (apt-get install {package})")]
    ToolMissing {
        tools: String,
        package: &'static str,
    },
    #[error("`{tool}` exited with code {code}")]
    ToolFailed {
        tool: String,
        code: i32,
        #[source]
        stderr: ToolOutput,
    },
    #[error("cannot run `{tool}`")]
    ToolNotStarted {
        tool: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path}")]
    File {
        what: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown option `{key}` (known: {known})")]
    UnknownOption { key: String, known: &'static str },
    #[error("option `{key}` {expects}")]
    BadOption { key: String, expects: &'static str },
}

/// The last lines a dump tool wrote to stderr, shown as the cause of its failure.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ToolOutput(pub String);

/// A driver error in one line: the server's message with where in the SQL it points, its
/// SQLSTATE, and the server's detail and hint. sqlx's own text repeats itself down the
/// source chain and, for PostgreSQL, names a line of the server's C source as if it were the
/// query's.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SqlCause(pub String);

impl From<sqlx::Error> for SqlCause {
    fn from(error: sqlx::Error) -> Self {
        if let Some(database) = error.as_database_error() {
            return SqlCause(server_error(database));
        }
        let mut parts: Vec<String> = vec![error.to_string()];
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            let text = cause.to_string();
            if !parts.iter().any(|known| known.contains(&text)) {
                parts.push(text);
            }
            source = cause.source();
        }
        SqlCause(parts.join(": "))
    }
}

fn server_error(error: &dyn sqlx::error::DatabaseError) -> String {
    let mut text = error.message().to_owned();
    if let Some(pg) = error.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
        if let Some(sqlx::postgres::PgErrorPosition::Original(at)) = pg.position() {
            text.push_str(&format!(" (at character {at} of the SQL)"));
        }
        if let Some(detail) = pg.detail() {
            text.push_str(&format!("; detail: {detail}"));
        }
        if let Some(hint) = pg.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
    }
    if let Some(code) = error.code() {
        text.push_str(&format!(" [SQLSTATE {code}]"));
    }
    text
}
