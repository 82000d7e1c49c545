//! Backups with the servers' own tools (pg_dump / pg_restore / psql, mariadb-dump / mariadb),
//! the drill that restores one into a scratch database and compares row counts, and the list
//! of backup files in a folder. Passwords reach the tools through their environment.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use rhai::{Array, Dynamic, Map};
use serde_json::json;
use tokio::process::Command;

use super::endpoint::{Driver, Endpoint, Options, Tls};
use super::error::{DbError, ToolOutput};
use super::ops::{int, rows};
use super::pool::{Database, Pool, Pools, Settings, on_pool};
use super::query::{Runner, execute};
use super::{Outcome, open, parse_url, refuse};
use crate::engine::binding::{Call, Failure, Family};
use crate::engine::context::RunContext;
use crate::transcript::event::Effect;

/// What must be escaped in a path inside an SQLite URI.
const URI_PATH: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b'#')
    .add(b'?')
    .add(b'%');

/// The first of `names` found on PATH.
fn find_tool(names: &[&str], package: &'static str) -> Result<PathBuf, DbError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in names {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(DbError::ToolMissing {
        tools: names.join(", "),
        package,
    })
}

/// Whether a MySQL-family tool is MariaDB's (Debian links `mysqldump` to `mariadb-dump`).
fn is_mariadb(tool: &Path) -> bool {
    let real = std::fs::canonicalize(tool).unwrap_or_else(|_| tool.to_owned());
    [tool, real.as_path()].iter().any(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("mariadb"))
    })
}

/// A dump or restore program with its connection arguments and environment.
struct Tool {
    path: PathBuf,
    args: Vec<String>,
    env: Vec<(&'static str, String)>,
}

impl Tool {
    fn postgres(name: &str, endpoint: &Endpoint, database: &str) -> Result<Self, DbError> {
        let path = find_tool(&[name], "postgresql-client")?;
        let mut env = Vec::new();
        if let Some(password) = &endpoint.password {
            env.push(("PGPASSWORD", password.clone()));
        }
        let mode = match endpoint.tls {
            Tls::Disabled => "disable",
            Tls::Preferred => "prefer",
            Tls::Required => "require",
            Tls::Verified => "verify-full",
        };
        env.push(("PGSSLMODE", mode.to_owned()));
        let args = vec![
            format!("--host={}", endpoint.host),
            format!("--port={}", endpoint.port),
            format!("--username={}", endpoint.user),
            format!("--dbname={database}"),
            "--no-password".to_owned(),
        ];
        Ok(Self { path, args, env })
    }

    fn mysql(names: &[&str], endpoint: &Endpoint, database: &str) -> Result<Self, DbError> {
        let path = find_tool(names, "mariadb-client")?;
        let mut env = Vec::new();
        if let Some(password) = &endpoint.password {
            env.push(("MYSQL_PWD", password.clone()));
        }
        let mut args = vec![
            if endpoint.host.starts_with('/') {
                format!("--socket={}", endpoint.host)
            } else {
                format!("--host={}", endpoint.host)
            },
            format!("--port={}", endpoint.port),
            format!("--user={}", endpoint.user),
        ];
        let mariadb = is_mariadb(&path);
        match (endpoint.tls, mariadb) {
            (Tls::Required, true) => args.push("--ssl".into()),
            (Tls::Verified, true) => {
                args.extend(["--ssl".into(), "--ssl-verify-server-cert".into()])
            }
            (Tls::Disabled, true) => args.push("--skip-ssl".into()),
            (Tls::Required, false) => args.push("--ssl-mode=REQUIRED".into()),
            (Tls::Verified, false) => args.push("--ssl-mode=VERIFY_IDENTITY".into()),
            (Tls::Disabled, false) => args.push("--ssl-mode=DISABLED".into()),
            (Tls::Preferred, _) => {}
        }
        args.push(database.to_owned());
        Ok(Self { path, args, env })
    }

    fn name(&self) -> String {
        self.path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    }

    /// Runs the tool, with `input` as its standard input when given.
    async fn run(self, extra: &[String], input: Option<&Path>) -> Result<(), DbError> {
        let tool = self.name();
        let stdin = match input {
            Some(file) => {
                Stdio::from(std::fs::File::open(file).map_err(|source| DbError::File {
                    what: "cannot read",
                    path: file.display().to_string(),
                    source,
                })?)
            }
            None => Stdio::null(),
        };
        let output = Command::new(&self.path)
            .args(&self.args)
            .args(extra)
            .envs(self.env.iter().map(|(k, v)| (*k, v)))
            .stdin(stdin)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| DbError::ToolNotStarted {
                tool: tool.clone(),
                source,
            })?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(DbError::ToolFailed {
            tool,
            code: output.status.code().unwrap_or(-1),
            stderr: ToolOutput(tail.join("\n")),
        })
    }
}

fn database_of(endpoint: &Endpoint) -> String {
    endpoint
        .database
        .clone()
        .unwrap_or_else(|| endpoint.user.clone())
}

/// Dumps `endpoint`'s database to `path`. PostgreSQL writes its custom format unless the
/// file ends in `.sql`.
async fn dump(endpoint: &Endpoint, pool: &Pool, path: &Path) -> Result<(), DbError> {
    let database = database_of(endpoint);
    let file = path.display().to_string();
    match endpoint.driver {
        Driver::Postgres => {
            let format = if file.ends_with(".sql") {
                "plain"
            } else {
                "custom"
            };
            let tool = Tool::postgres("pg_dump", endpoint, &database)?;
            tool.run(
                &[format!("--format={format}"), format!("--file={file}")],
                None,
            )
            .await
        }
        Driver::MySql => {
            let mut tool = Tool::mysql(&["mariadb-dump", "mysqldump"], endpoint, &database)?;
            // Options go before the database name.
            let name = tool.args.pop().unwrap_or_default();
            tool.args.extend([
                "--single-transaction".into(),
                "--routines".into(),
                "--triggers".into(),
                format!("--result-file={file}"),
                name,
            ]);
            tool.run(&[], None).await
        }
        Driver::Sqlite => {
            // As a URI with its own mode: a plain path would inherit an in-memory source's
            // mode and write the copy to memory.
            let uri = percent_encoding::utf8_percent_encode(&file, URI_PATH).to_string();
            let quoted = format!("file:{uri}?mode=rwc").replace('\'', "''");
            let sql = format!("VACUUM INTO '{quoted}'");
            execute(Runner::Pool(pool.clone()), sql, Vec::new())
                .await
                .map(|_| ())
        }
    }
}

/// Restores the dump at `path` into `database` on `endpoint`'s server.
async fn load(
    endpoint: &Endpoint,
    database: &str,
    path: &Path,
    scratch: bool,
) -> Result<(), DbError> {
    let file = path.display().to_string();
    match endpoint.driver {
        Driver::Postgres => {
            let custom = std::fs::read(path)
                .map(|bytes| bytes.starts_with(b"PGDMP"))
                .map_err(|source| DbError::File {
                    what: "cannot read",
                    path: file.clone(),
                    source,
                })?;
            if custom {
                let tool = Tool::postgres("pg_restore", endpoint, database)?;
                let mut extra = vec!["--exit-on-error".to_owned()];
                if scratch {
                    extra.push("--no-owner".into());
                } else {
                    extra.extend(["--clean".into(), "--if-exists".into()]);
                }
                extra.push(file);
                tool.run(&extra, None).await
            } else {
                let tool = Tool::postgres("psql", endpoint, database)?;
                let extra = [
                    "--quiet".into(),
                    "--set=ON_ERROR_STOP=1".into(),
                    format!("--file={file}"),
                ];
                tool.run(&extra, None).await
            }
        }
        Driver::MySql => {
            let tool = Tool::mysql(&["mariadb", "mysql"], endpoint, database)?;
            tool.run(&[], Some(path)).await
        }
        Driver::Sqlite => Err(DbError::Unsupported {
            what: "restore() (copy the backup file over the database while nothing has it open)",
            driver: "sqlite",
        }),
    }
}

/// A path from a script: relative ones are taken from the runbook's folder.
fn resolve(ctx: &RunContext, path: &str) -> PathBuf {
    let path = PathBuf::from(path);
    let full = if path.is_relative() {
        ctx.runbook_dir.join(path)
    } else {
        path
    };
    full.components().collect()
}

/// Whether `name` matches `pattern`, where `*` stands for any run of characters.
fn matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, rest) = parts.split_first().unwrap_or((&"", &[]));
    let Some(mut remaining) = name.strip_prefix(first) else {
        return false;
    };
    let Some((last, middle)) = rest.split_last() else {
        return remaining.is_empty();
    };
    for part in middle {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

fn file_size(path: &Path) -> i64 {
    std::fs::metadata(path).map_or(0, |m| m.len() as i64)
}

/// What a backup or restore returns on a dry run: the same fields, marked as planned.
fn planned_file() -> Map {
    let mut map = Map::new();
    map.insert("path".into(), "".into());
    map.insert("bytes".into(), 0_i64.into());
    map.insert("duration_ms".into(), 0_i64.into());
    map.insert("planned".into(), true.into());
    map
}

/// What the restore drill returns on a dry run: nothing was compared.
fn planned_drill() -> Map {
    let mut map = Map::new();
    map.insert("ok".into(), true.into());
    for key in ["tables", "rows", "dump_bytes", "duration_ms"] {
        map.insert(key.into(), 0_i64.into());
    }
    map.insert("mismatches".into(), Array::new().into());
    map.insert("scratch".into(), "".into());
    map.insert("planned".into(), true.into());
    map
}

fn backup(ctx: &Arc<RunContext>, pools: &Pools, url: &Dynamic, path: &str) -> Outcome<Map> {
    let (text, endpoint) = parse_url(ctx, "db::backup", url)?;
    let database = open(
        ctx,
        pools,
        &text,
        endpoint,
        Settings::default(),
        &Map::new(),
    )?;
    let file = resolve(ctx, path);
    let shown = file.display().to_string();
    Call::new(ctx, "db::backup", Effect::Mutate, database.target())
        .args(json!({ "path": shown }))
        .run(planned_file, async move {
            let started = Instant::now();
            dump(&database.endpoint, &database.pool, &file).await?;
            let mut map = Map::new();
            map.insert("path".into(), file.display().to_string().into());
            map.insert("bytes".into(), file_size(&file).into());
            map.insert(
                "duration_ms".into(),
                (started.elapsed().as_millis() as i64).into(),
            );
            Ok::<_, Failure>(map)
        })
}

fn restore(ctx: &Arc<RunContext>, url: &Dynamic, path: &str) -> Outcome<Map> {
    let (_, endpoint) = parse_url(ctx, "db::restore", url)?;
    let file = resolve(ctx, path);
    let shown = file.display().to_string();
    Call::new(ctx, "db::restore", Effect::Mutate, endpoint.target.clone())
        .args(json!({ "path": shown }))
        .run(planned_file, async move {
            let started = Instant::now();
            let database = database_of(&endpoint);
            load(&endpoint, &database, &file, false).await?;
            let mut map = Map::new();
            map.insert("path".into(), file.display().to_string().into());
            map.insert(
                "duration_ms".into(),
                (started.elapsed().as_millis() as i64).into(),
            );
            Ok::<_, Failure>(map)
        })
}

/// What a restore drill may be told.
struct Drill {
    dir: PathBuf,
    keep_dump: bool,
}

fn drill_options(ctx: &RunContext, options: &Map) -> Result<Drill, DbError> {
    let mut drill = Drill {
        dir: std::env::temp_dir(),
        keep_dump: false,
    };
    for (key, value) in options {
        match key.as_str() {
            "dir" => drill.dir = resolve(ctx, &value.to_string()),
            "keep_dump" => {
                drill.keep_dump = value.as_bool().map_err(|_| DbError::BadOption {
                    key: key.to_string(),
                    expects: "takes true or false",
                })?;
            }
            other => {
                return Err(DbError::UnknownOption {
                    key: other.to_owned(),
                    known: "dir, keep_dump",
                });
            }
        }
    }
    Ok(drill)
}

fn random_suffix() -> String {
    let mut bytes = [0_u8; 4];
    let _ = getrandom::fill(&mut bytes);
    hex::encode(bytes)
}

/// A database name safe to use unquoted: lower-case letters, digits and underscores.
fn scratch_name(database: &str) -> String {
    let base: String = database
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(30)
        .collect();
    format!("{base}_restore_check_{}", random_suffix())
}

fn quote(driver: Driver, name: &str) -> String {
    match driver {
        Driver::MySql => format!("`{}`", name.replace('`', "``")),
        _ => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

/// Row counts of every table, by name.
async fn counts(pool: &Pool) -> Result<Vec<(String, i64)>, DbError> {
    let (list, driver) = match pool {
        Pool::Postgres(_) => (
            "select quote_ident(table_schema) || '.' || quote_ident(table_name) as name \
             from information_schema.tables where table_type = 'BASE TABLE' \
             and table_schema not in ('pg_catalog', 'information_schema') order by 1",
            Driver::Postgres,
        ),
        Pool::MySql(_) => (
            "select table_name as name from information_schema.tables \
             where table_schema = database() and table_type = 'BASE TABLE' order by 1",
            Driver::MySql,
        ),
        Pool::Sqlite(_) => (
            "select name from sqlite_master where type = 'table' \
             and name not like 'sqlite_%' order by 1",
            Driver::Sqlite,
        ),
    };
    let mut counts = Vec::new();
    for row in rows(pool, list).await? {
        let name = row.get("name").map(ToString::to_string).unwrap_or_default();
        let quoted = match driver {
            Driver::Postgres => name.clone(),
            other => quote(other, &name),
        };
        let counted = rows(pool, &format!("select count(*) as n from {quoted}")).await?;
        counts.push((name, counted.first().map_or(0, |r| int(r, "n"))));
    }
    Ok(counts)
}

/// Compares table row counts; returns (tables, rows, mismatches).
fn compare(source: &[(String, i64)], restored: &[(String, i64)]) -> (i64, i64, Array) {
    let mut mismatches = Array::new();
    for (table, expected) in source {
        let found = restored.iter().find(|(t, _)| t == table).map(|(_, n)| *n);
        if found != Some(*expected) {
            let mut m = Map::new();
            m.insert("table".into(), table.clone().into());
            m.insert("source".into(), (*expected).into());
            m.insert(
                "restored".into(),
                found.map_or(Dynamic::UNIT, Dynamic::from),
            );
            mismatches.push(m.into());
        }
    }
    let rows = source.iter().map(|(_, n)| n).sum();
    (source.len() as i64, rows, mismatches)
}

/// Opens a pool on the scratch copy.
async fn scratch_pool(endpoint: &Endpoint, name: &str, file: &Path) -> Result<Database, DbError> {
    let mut scratch = endpoint.with_database(name);
    if let Options::Sqlite { .. } = &scratch.options {
        // Fresh options: the source's may describe an in-memory database.
        scratch.options = Options::Sqlite {
            options: sqlx::sqlite::SqliteConnectOptions::new()
                .filename(file)
                .read_only(true),
            in_memory: false,
        };
    }
    super::pool::open(
        scratch,
        Settings {
            max_connections: 1,
            ..Settings::default()
        },
    )
    .await
}

async fn drop_scratch(source: &Pool, driver: Driver, name: &str) -> Result<(), DbError> {
    let quoted = quote(driver, name);
    let runner = Runner::Pool(source.clone());
    let forced = format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)");
    match driver {
        Driver::Postgres => match execute(runner.clone(), forced, Vec::new()).await {
            Ok(_) => Ok(()),
            // Before PostgreSQL 13 there is no FORCE; our own pool is closed by then.
            Err(_) => execute(
                runner,
                format!("DROP DATABASE IF EXISTS {quoted}"),
                Vec::new(),
            )
            .await
            .map(|_| ()),
        },
        Driver::MySql => execute(
            runner,
            format!("DROP DATABASE IF EXISTS {quoted}"),
            Vec::new(),
        )
        .await
        .map(|_| ()),
        Driver::Sqlite => Ok(()),
    }
}

async fn drill(database: Database, options: Drill) -> Result<Map, DbError> {
    let started = Instant::now();
    let endpoint = &database.endpoint;
    let name = scratch_name(&database_of(endpoint));
    let extension = if endpoint.driver == Driver::MySql {
        "sql"
    } else {
        "dump"
    };
    let file = options.dir.join(format!("{name}.{extension}"));
    dump(endpoint, &database.pool, &file).await?;
    let dump_bytes = file_size(&file);
    let result = restore_and_count(&database, &name, &file).await;
    let dropped = drop_scratch(&database.pool, endpoint.driver, &name).await;
    if !options.keep_dump {
        let _ = std::fs::remove_file(&file);
    }
    let (source, restored) = result?;
    dropped?;
    let (tables, total, mismatches) = compare(&source, &restored);
    let mut map = Map::new();
    map.insert("ok".into(), mismatches.is_empty().into());
    map.insert("tables".into(), tables.into());
    map.insert("rows".into(), total.into());
    map.insert("mismatches".into(), mismatches.into());
    map.insert("dump_bytes".into(), dump_bytes.into());
    map.insert("scratch".into(), name.into());
    if options.keep_dump {
        map.insert("dump".into(), file.display().to_string().into());
    }
    map.insert(
        "duration_ms".into(),
        (started.elapsed().as_millis() as i64).into(),
    );
    Ok(map)
}

type Counts = Vec<(String, i64)>;

async fn restore_and_count(
    database: &Database,
    name: &str,
    file: &Path,
) -> Result<(Counts, Counts), DbError> {
    let endpoint = &database.endpoint;
    if endpoint.driver != Driver::Sqlite {
        let create = format!("CREATE DATABASE {}", quote(endpoint.driver, name));
        execute(Runner::Pool(database.pool.clone()), create, Vec::new()).await?;
        load(endpoint, name, file, true).await?;
    }
    let source = counts(&database.pool).await?;
    let scratch = scratch_pool(endpoint, name, file).await?;
    let restored = counts(&scratch.pool).await;
    on_pool!(&scratch.pool, p => p.close().await);
    Ok((source, restored?))
}

fn backup_restore_test(
    ctx: &Arc<RunContext>,
    pools: &Pools,
    url: &Dynamic,
    options: &Map,
) -> Outcome<Map> {
    let (text, endpoint) = parse_url(ctx, "db::backup_restore_test", url)?;
    let target = endpoint.target.clone();
    let parsed = drill_options(ctx, options)
        .map_err(|err| refuse(ctx, "db::backup_restore_test", &target, err))?;
    let database = open(
        ctx,
        pools,
        &text,
        endpoint,
        Settings::default(),
        &Map::new(),
    )?;
    let dir = parsed.dir.display().to_string();
    Call::new(ctx, "db::backup_restore_test", Effect::Mutate, target)
        .args(json!({ "dir": dir, "keep_dump": parsed.keep_dump }))
        .run(planned_drill, async move {
            drill(database, parsed).await.map_err(Failure::from)
        })
}

/// Backup files in `dir` whose names match `pattern`, newest first.
fn backup_files(dir: &Path, pattern: &str, now: SystemTime) -> Result<Array, DbError> {
    let entries = std::fs::read_dir(dir).map_err(|source| DbError::File {
        what: "cannot list",
        path: dir.display().to_string(),
        source,
    })?;
    let mut files: Vec<(SystemTime, Map)> = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let Ok(meta) = entry.metadata() else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        if !meta.is_file() || !matches(pattern, &name) {
            continue;
        }
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let age = now
            .duration_since(modified)
            .unwrap_or_default()
            .as_secs_f64()
            / 3600.0;
        let mut map = Map::new();
        map.insert("path".into(), entry.path().display().to_string().into());
        map.insert(
            "name".into(),
            entry.file_name().to_string_lossy().into_owned().into(),
        );
        map.insert("bytes".into(), (meta.len() as i64).into());
        let stamp = chrono::DateTime::<chrono::Utc>::from(modified);
        map.insert(
            "modified".into(),
            stamp
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                .into(),
        );
        map.insert("age_hours".into(), age.into());
        files.push((modified, map));
    }
    files.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    Ok(files.into_iter().map(|(_, m)| Dynamic::from(m)).collect())
}

fn list_backups(ctx: &Arc<RunContext>, dir: &str, pattern: &str) -> Outcome<Array> {
    let dir = resolve(ctx, dir);
    let pattern = pattern.to_owned();
    let shown = dir.display().to_string();
    Call::new(ctx, "db::backup_files", Effect::Read, shown)
        .args(json!({ "pattern": pattern }))
        .run(Array::new, async move {
            backup_files(&dir, &pattern, SystemTime::now()).map_err(Failure::from)
        })
}

pub fn register(family: &mut Family, ctx: &Arc<RunContext>, pools: &Pools) {
    let (c, p) = (ctx.clone(), pools.clone());
    family.function(
        "backup",
        Some(Effect::Mutate),
        &["url: Dynamic", "path: &str", "Map"],
        &[
            "Dumps the database to `path` (relative to the runbook) with the server's own tool: pg_dump (custom format, or plain SQL for a `.sql` file), mariadb-dump or mysqldump, or SQLite's VACUUM INTO. Returns `#{path, bytes, duration_ms}`. Passwords reach the tools through PGPASSWORD / MYSQL_PWD, never their arguments.",
            "",
            "```rhai",
            "db::backup(secret(\"DATABASE_URL\"), `backups/elson-${version}.dump`);",
            "```",
        ],
        move |url: Dynamic, path: &str| {
            backup(&c, &p, &url, path)
        },
    );
    let c = ctx.clone();
    family.function(
        "restore",
        Some(Effect::Mutate),
        &["url: Dynamic", "path: &str", "Map"],
        &[
            "Restores a dump made by `db::backup` into the database: pg_restore --clean for PostgreSQL's custom format, psql for plain SQL, mariadb or mysql for MySQL. Returns `#{path, duration_ms}`.",
            "",
            "```rhai",
            "db::restore(secret(\"STAGING_DATABASE_URL\"), \"backups/elson.dump\");",
            "```",
        ],
        move |url: Dynamic, path: &str| {
            restore(&c, &url, path)
        },
    );
    let (c, p) = (ctx.clone(), pools.clone());
    family.function(
        "backup_restore_test",
        Some(Effect::Mutate),
        &["url: Dynamic", "Map"],
        &[
            "The restore drill: dumps the database, restores the dump into a new scratch database on the same server, compares every table's row count, and drops the scratch database. Returns `#{ok, tables, rows, mismatches: [#{table, source, restored}], dump_bytes, scratch, duration_ms}`.",
            "",
            "```rhai",
            "check(\"Backups restore\", || db::backup_restore_test(secret(\"DATABASE_URL\")).ok);",
            "```",
        ],
        move |url: Dynamic| {
            backup_restore_test(&c, &p, &url, &Map::new())
        },
    );
    let (c, p) = (ctx.clone(), pools.clone());
    family.function(
        "backup_restore_test",
        Some(Effect::Mutate),
        &["url: Dynamic", "options: Map", "Map"],
        &[
            "`backup_restore_test` with options: `dir` (where the dump goes, default the system's temporary folder) and `keep_dump`.",
            "",
            "```rhai",
            "db::backup_restore_test(url, #{dir: \"backups\", keep_dump: true});",
            "```",
        ],
        move |url: Dynamic, options: Map| {
            backup_restore_test(&c, &p, &url, &options)
        },
    );
    let c = ctx.clone();
    family.function(
        "backup_files",
        Some(Effect::Read),
        &["dir: &str", "Array"],
        &[
            "The files in a backup folder (relative to the runbook), newest first: `[#{path, name, bytes, modified, age_hours}]`.",
            "",
            "```rhai",
            "let newest = db::backup_files(\"/var/backups/elson\")[0];",
            "```",
        ],
        move |dir: &str| list_backups(&c, dir, "*"),
    );
    let c = ctx.clone();
    family.function(
        "backup_files",
        Some(Effect::Read),
        &["dir: &str", "pattern: &str", "Array"],
        &[
            "`backup_files` for the names that match `pattern`, where `*` stands for any characters.",
            "",
            "```rhai",
            "let dumps = db::backup_files(\"/var/backups/elson\", \"elson-*.dump\");",
            "```",
        ],
        move |dir: &str, pattern: &str| {
            list_backups(&c, dir, pattern)
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_patterns_match_like_a_shell() {
        assert!(matches("*", "anything.dump"));
        assert!(matches("elson-*.dump", "elson-2024-01-01.dump"));
        assert!(!matches("elson-*.dump", "elson-2024-01-01.sql"));
        assert!(matches("a*b*c", "a-x-b-y-c"));
        assert!(!matches("a*b*c", "a-x-c"));
        assert!(matches("exact.sql", "exact.sql"));
        assert!(!matches("exact.sql", "exact.sql.gz"));
    }

    #[test]
    fn scratch_names_are_plain_identifiers() {
        let name = scratch_name("Elson-Prod.DB");
        assert!(name.starts_with("elson_prod_db_restore_check_"), "{name}");
        assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    }
}
