//! The `db::` bindings and the data checks of `stdlib/data.rhai`, run through the binary
//! against the PostgreSQL and MariaDB servers on this machine, SQLite, and a primary with a
//! streaming replica that the replication tests start themselves. Every test works in its own
//! database and drops it.

#[path = "support/checks.rs"]
mod checks;
#[path = "support/postgres.rs"]
mod postgres;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use checks::{Run, run_in, stdlib};
use postgres::{PgDb, PgPair, free_port, psql, unique};
use serde_json::Value;

const PG: &str = "postgres://postgres@127.0.0.1:5432";
const MY: &str = "mysql://root@127.0.0.1:3306";

fn run(script: &str, args: &[&str]) -> (tempfile::TempDir, Run) {
    let dir = tempfile::tempdir().unwrap();
    let outcome = run_in(dir.path(), script, args, &[]);
    (dir, outcome)
}

fn mariadb(database: &str, sql: &str) -> String {
    let out = Command::new("mariadb")
        .args(["-h", "127.0.0.1", "-uroot", "-N", "-B", database, "-e", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mariadb {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A MariaDB database of its own for one test, dropped afterwards.
struct MyDb {
    name: String,
}

impl MyDb {
    fn new(tag: &str) -> Self {
        let name = unique(tag);
        mariadb("mysql", &format!("create database {name}"));
        Self { name }
    }

    fn url(&self) -> String {
        format!("{MY}/{}", self.name)
    }

    fn sql(&self, sql: &str) -> String {
        mariadb(&self.name, sql)
    }
}

impl Drop for MyDb {
    fn drop(&mut self) {
        let _ = Command::new("mariadb")
            .args(["-h", "127.0.0.1", "-uroot", "-e"])
            .arg(format!("drop database if exists {}", self.name))
            .output();
    }
}

#[test]
fn postgres_rows_keep_their_types() {
    let db = PgDb::new("types");
    let script = format!(
        r#"
        let db = db::connect("{url}");
        step("row", || {{
            let row = db.query_one(`select 1::int2 as small, 9000000000::int8 as big, 1.5::float4 as real,
                2.25::float8 as double, 12.345::numeric as amount, true as flag, 'hé'::text as name,
                '{{"k": [1, 2]}}'::jsonb as doc, '2024-01-02 03:04:05+00'::timestamptz as at,
                '2024-01-02 03:04:05'::timestamp as local, '2024-01-02'::date as day,
                'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid as id, '\x0102'::bytea as raw,
                null::int as missing, interval '1 day 2 hours' as span, array[1, 2]::int4[] as list,
                $1 as text_param, $2::int8 + 1 as int_param, $3::text as null_param`,
                ["p", 41, ()]);
            let types = [];
            for key in row.keys() {{ types.push([key, type_of(row[key])]); }}
            #{{ values: row, types: types }}
        }});
        "#,
        url = db.url()
    );
    let (_dir, out) = run(&script, &[]);
    assert_eq!(out.code, 0, "{}", out.screen);
    let value = &out.step("row")["value"];
    let row = &value["values"];
    assert_eq!(row["small"], 1);
    assert_eq!(row["big"], 9_000_000_000_i64);
    assert_eq!(row["real"], 1.5);
    assert_eq!(row["double"], 2.25);
    assert_eq!(row["amount"], "12.345");
    assert_eq!(row["flag"], true);
    assert_eq!(row["name"], "hé");
    assert_eq!(row["doc"]["k"][1], 2);
    assert_eq!(row["at"], "2024-01-02T03:04:05Z");
    assert_eq!(row["local"], "2024-01-02T03:04:05");
    assert_eq!(row["day"], "2024-01-02");
    assert_eq!(row["id"], "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
    assert_eq!(row["raw"], "<2 bytes>");
    assert_eq!(row["missing"], Value::Null);
    assert_eq!(row["span"], "1 day 02:00:00");
    assert_eq!(row["list"], serde_json::json!([1, 2]));
    assert_eq!(row["text_param"], "p");
    assert_eq!(row["int_param"], 42);
    assert_eq!(row["null_param"], Value::Null);
    let types: Vec<(String, String)> = value["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
        .collect();
    let type_of = |k: &str| types.iter().find(|(n, _)| n == k).unwrap().1.clone();
    assert_eq!(type_of("big"), "i64");
    assert_eq!(type_of("double"), "f64");
    assert_eq!(type_of("flag"), "bool");
    assert_eq!(type_of("doc"), "map");
    assert_eq!(type_of("raw"), "blob");
    assert_eq!(type_of("missing"), "()");
}

#[test]
fn mariadb_and_sqlite_rows_keep_their_types() {
    let db = MyDb::new("types");
    db.sql(
        "create table t (i int, u bigint unsigned, d decimal(8,3), f double, b tinyint(1), \
         s varchar(10), at datetime, j json, bin varbinary(4), n int)",
    );
    db.sql("insert into t values (7, 18446744073709551615, 1.250, 0.5, 1, 'x', '2024-01-02 03:04:05', '{\"a\": 1}', 0x0102, null)");
    let script = format!(
        r#"
        let my = db::connect("{url}");
        let lite = db::connect("sqlite::memory:");
        step("mysql", || my.query_one("select * from t where i = ?", [7]));
        step("mysql plan", || my.explain("select * from t where i = ?", #{{params: [7]}}));
        step("versions", || [my.server_version(), lite.server_version()]);
        step("sqlite", || {{
            lite.execute("create table t (i integer, r real, s text, b boolean, x blob, n text)");
            lite.execute("insert into t values (?, ?, ?, ?, ?, ?)", [3, 1.5, "y", true, blob(2, 7), ()]);
            lite.query_one("select * from t")
        }});
        step("sqlite keeps its data", || lite.scalar("select count(*) from t"));
        "#,
        url = db.url()
    );
    let (_dir, out) = run(&script, &[]);
    assert_eq!(out.code, 0, "{}", out.screen);
    let row = &out.step("mysql")["value"];
    assert_eq!(row["i"], 7);
    assert_eq!(row["u"], "18446744073709551615");
    assert_eq!(row["d"], "1.250");
    assert_eq!(row["f"], 0.5);
    assert_eq!(row["b"], true);
    assert_eq!(row["s"], "x");
    assert_eq!(row["at"], "2024-01-02T03:04:05");
    assert_eq!(row["bin"], "<2 bytes>");
    assert_eq!(row["n"], Value::Null);
    // MariaDB keeps JSON as text with a check constraint; it arrives as that text.
    assert_eq!(row["j"], "{\"a\": 1}");
    let row = &out.step("sqlite")["value"];
    assert_eq!(row["i"], 3);
    assert_eq!(row["r"], 1.5);
    assert_eq!(row["s"], "y");
    assert_eq!(row["b"], true);
    assert_eq!(row["x"], "<2 bytes>");
    assert_eq!(row["n"], Value::Null);
    assert_eq!(out.step("sqlite keeps its data")["value"], 1);
    assert_eq!(out.step("mysql plan")["value"]["rows"], 1.0);
    let versions = &out.step("versions")["value"];
    assert!(
        versions[0].as_str().unwrap().contains("MariaDB"),
        "{versions}"
    );
    assert!(
        versions[1].as_str().unwrap().starts_with("3."),
        "{versions}"
    );
}

#[test]
fn a_dry_run_rehearses_writes_and_leaves_the_table_unchanged() {
    let db = PgDb::new("dryrun");
    db.sql("create table orders (id int, status text); insert into orders select g, 'open' from generate_series(1, 10) g");
    let script = format!(
        r#"
        let db = db::connect("{url}");
        step("close old orders", || db.execute("update orders set status = 'closed' where id <= $1", [4]));
        step("in a transaction", || db.transaction(|tx| {{
            tx.execute("delete from orders where id > 8");
            tx.scalar("select count(*) from orders")
        }}));
        "#,
        url = db.url()
    );
    let dir = tempfile::tempdir().unwrap();
    let out = run_in(dir.path(), &script, &["--dry-run"], &[]);
    assert_eq!(out.code, 0, "{}", out.screen);
    assert!(
        out.screen.contains("would run db::execute"),
        "{}",
        out.screen
    );
    assert_eq!(out.step("close old orders")["value"]["rows_affected"], 4);
    assert_eq!(out.step("close old orders")["value"]["committed"], false);
    assert_eq!(out.step("in a transaction")["value"], 8);
    let would: Vec<&Value> = out
        .events
        .iter()
        .filter(|e| e["type"] == "binding_end" && e["outcome"] == "would_run")
        .collect();
    assert_eq!(would.len(), 2, "{}", out.transcript);
    assert_eq!(
        db.sql("select count(*) from orders where status = 'closed'"),
        "0"
    );
    assert_eq!(db.sql("select count(*) from orders"), "10");

    let out = run_in(dir.path(), &script, &["--yes"], &[]);
    assert_eq!(out.code, 0, "{}", out.screen);
    assert_eq!(out.step("close old orders")["value"]["committed"], true);
    assert_eq!(
        db.sql("select count(*) from orders where status = 'closed'"),
        "4"
    );
    assert_eq!(db.sql("select count(*) from orders"), "8");
}

#[test]
fn a_transaction_that_throws_is_rolled_back() {
    let db = PgDb::new("rollback");
    db.sql(
        "create table accounts (id int, balance int); insert into accounts values (1, 100), (2, 0)",
    );
    let script = format!(
        r#"
        let db = db::connect("{url}");
        step("transfer", #{{"continue": true}}, || db.transaction(|tx| {{
            tx.execute("update accounts set balance = balance - 10 where id = 1");
            tx.execute("update acounts set balance = balance + 10 where id = 2");
        }}));
        "#,
        url = db.url()
    );
    let (_dir, out) = run(&script, &["--yes"]);
    assert_eq!(out.code, 1, "{}", out.screen);
    assert_eq!(out.status("transfer"), "failed");
    assert!(
        out.screen.contains("relation \"acounts\" does not exist"),
        "{}",
        out.screen
    );
    assert_eq!(db.sql("select balance from accounts where id = 1"), "100");
}

#[test]
fn a_syntax_error_names_the_binding_the_target_and_the_line() {
    let db = PgDb::new("syntax");
    let script = format!(
        "let db = db::connect(\"{url}\");\ncheck(\"count users\", || {{\n    db.scalar(\"selec count(*) from users\")\n}});\n",
        url = db.url()
    );
    let (_dir, out) = run(&script, &[]);
    assert_eq!(out.code, 1, "{}", out.screen);
    let expected = format!(
        "db::query on postgres://postgres@127.0.0.1:5432/{}: query failed; caused by: syntax error at or near \"selec\" (at character 1 of the SQL) [SQLSTATE 42601] at check.rhai:3:8",
        db.name
    );
    assert!(out.screen.contains(&expected), "{}", out.screen);
    assert_eq!(out.step("count users")["location"], "check.rhai:3:8");
}

#[test]
fn a_refused_connection_says_so_at_once() {
    let script = "check(\"connect\", || db::connect(\"postgres://app:Refused-Pass1@127.0.0.1:1/elson\").ping());\n";
    let started = Instant::now();
    let (_dir, out) = run(script, &[]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(out.code, 1, "{}", out.screen);
    assert!(
        out.screen.contains("db::connect on postgres://app@127.0.0.1:1/elson: cannot connect; caused by: error communicating with database: Connection refused (os error 111) at check.rhai:1:25"),
        "{}",
        out.screen
    );
    assert!(!out.screen.contains("Refused-Pass1") && !out.transcript.contains("Refused-Pass1"));
}

/// PostgreSQL here trusts every local connection and so accepts any password; the wrong
/// password is shown against MariaDB, which checks it.
#[test]
fn a_wrong_password_is_refused_and_never_shown() {
    let db = MyDb::new("password");
    let user = format!("u{}", &db.name[db.name.len() - 8..]);
    mariadb(
        "mysql",
        &format!("create user '{user}'@'%' identified by 'Right-Horse-42'"),
    );
    mariadb(
        "mysql",
        &format!("grant all on {}.* to '{user}'@'%'", db.name),
    );
    let script = format!(
        r#"
        check("wrong password", || db::connect("mysql://{user}:Wrong-Battery-7@127.0.0.1:3306/{name}").ping());
        check("right password from a secret", || db::connect(secret("DB_URL")).scalar("select 40 + 2") == 42);
        "#,
        name = db.name
    );
    let dir = tempfile::tempdir().unwrap();
    let url = format!("mysql://{user}:Right-Horse-42@127.0.0.1:3306/{}", db.name);
    let out = run_in(dir.path(), &script, &[], &[("DB_URL", &url)]);
    mariadb("mysql", &format!("drop user '{user}'@'%'"));
    assert_eq!(out.code, 1, "{}", out.screen);
    assert_eq!(out.status("wrong password"), "failed");
    assert_eq!(out.status("right password from a secret"), "passed");
    let expected = format!(
        "db::connect on mysql://{user}@127.0.0.1:3306/{}: cannot connect; caused by: Access denied for user '{user}'",
        db.name
    );
    assert!(out.screen.contains(&expected), "{}", out.screen);
    for text in [&out.screen, &out.transcript] {
        assert!(!text.contains("Wrong-Battery-7"), "{text}");
        assert!(!text.contains("Right-Horse-42"), "{text}");
    }
}

#[test]
fn plaintext_to_a_remote_postgres_needs_sslmode_disable() {
    let script = r#"
        check("prefer", || db::connect("postgres://app:Remote-Pass9@db.example.com/elson?sslmode=prefer"));
    "#;
    let (_dir, out) = run(script, &["--dry-run"]);
    let message = out.step("prefer")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        message.contains("db::connect on postgres://app@db.example.com/elson: refusing a connection to db.example.com that may travel in plaintext (sslmode=prefer); put sslmode=disable in the URL"),
        "{message}"
    );
    assert!(!out.screen.contains("Remote-Pass9") && !out.transcript.contains("Remote-Pass9"));
}

#[test]
fn migrations_at_head_fails_behind_or_missing_and_passes_at_head() {
    let alembic = PgDb::new("alembic");
    let sqlx_db = MyDb::new("sqlxmig");
    let plain = PgDb::new("plainmig");
    let empty = PgDb::new("nomig");
    alembic.sql("create table alembic_version (version_num varchar(32) primary key); insert into alembic_version values ('3f2a9c')");
    sqlx_db.sql("create table _sqlx_migrations (version bigint primary key, description text, installed_on timestamp default now(), success boolean, checksum blob, execution_time bigint)");
    sqlx_db.sql("insert into _sqlx_migrations (version, description, success) values (20240101, 'init', 1), (20240202, 'orders', 1)");
    plain.sql("create table schema_migrations (version bigint, dirty boolean); insert into schema_migrations values (7, false)");
    let script = format!(
        r#"
        import "data" as data;
        check("alembic at head", || data::migrations_at_head("{a}", "3f2a9c"));
        check("alembic behind", || data::migrations_at_head("{a}", "9d1e44"));
        check("sqlx at head", || data::migrations_at_head("{s}", 20240202));
        check("sqlx behind", || data::migrations_at_head("{s}", 20240303));
        check("schema_migrations at head", || data::migrations_at_head("{p}", "7"));
        check("never migrated", || data::migrations_at_head("{e}", "3f2a9c"));
        "#,
        a = alembic.url(),
        s = sqlx_db.url(),
        p = plain.url(),
        e = empty.url()
    );
    let (_dir, out) = run(&script, &[]);
    assert_eq!(out.code, 1, "{}", out.screen);
    assert_eq!(out.status("alembic at head"), "passed");
    assert_eq!(
        out.findings("alembic behind"),
        ["alembic migrations are at 3f2a9c, expected 9d1e44"]
    );
    assert_eq!(out.status("sqlx at head"), "passed");
    assert_eq!(
        out.findings("sqlx behind"),
        ["sqlx migrations are at 20240202, expected 20240303"]
    );
    assert_eq!(out.status("schema_migrations at head"), "passed");
    assert_eq!(
        out.findings("never migrated"),
        [
            "migrations never ran: no migrations table (looked for alembic_version, _sqlx_migrations, schema_migrations)"
        ]
    );
    assert!(
        out.screen
            .contains("- alembic migrations are at 3f2a9c, expected 9d1e44")
    );
}

#[test]
fn pool_and_connection_checks_compare_with_the_server_limit() {
    let db = PgDb::new("pool");
    let max = psql(5432, "postgres", "show max_connections");
    let script = format!(
        r#"
        import "data" as data;
        let url = "{url}";
        check("pool fits", || data::pool_within_limit(url, 5, 2));
        check("pool too big", || data::pool_within_limit(url, 50, 10));
        check("connections low", || data::connections_below(url, 0.9));
        check("connections over a tiny limit", || data::connections_below(url, 0.0001));
        step("pool", || db::connect(url, #{{max_connections: 3}}).pool());
        "#,
        url = db.url()
    );
    let (_dir, out) = run(&script, &[]);
    assert_eq!(out.code, 1, "{}", out.screen);
    assert_eq!(out.status("pool fits"), "passed");
    let finding = &out.findings("pool too big")[0];
    assert!(
        finding.starts_with("10 instances × pool of 50 = 500 connections, but the server allows"),
        "{finding}"
    );
    assert!(
        finding.contains(&format!("max_connections {max}")),
        "{finding}"
    );
    assert_eq!(out.status("connections low"), "passed");
    assert!(out.findings("connections over a tiny limit")[0].contains("connections in use"));
    let pool = &out.step("pool")["value"];
    assert_eq!(pool["max_connections"], 3);
    assert!(pool["size"].as_i64().unwrap() >= 1);
}

#[test]
fn query_times_are_judged_against_a_threshold() {
    let db = PgDb::new("queries");
    db.sql("create table users (id int primary key, email text); insert into users select g, 'u' || g from generate_series(1, 1000) g");
    let script = format!(
        r#"
        import "data" as data;
        let url = "{url}";
        let fast = [#{{name: "user by id", sql: "select * from users where id = $1", params: [42]}}, "select count(*) from users"];
        check("critical queries fast", || data::queries_fast(url, fast, 1000));
        check("a slow query", || data::queries_fast(url, [#{{name: "report", sql: "select pg_sleep(0.2)"}}], 50));
        step("plan", || db::connect(url).explain("select * from users where id = $1", #{{params: [1], analyze: true}}));
        check("statements without pg_stat_statements", || data::no_slow_queries(url, 100));
        "#,
        url = db.url()
    );
    let (_dir, out) = run(&script, &[]);
    assert_eq!(out.code, 1, "{}", out.screen);
    assert_eq!(out.status("critical queries fast"), "passed");
    let finding = &out.findings("a slow query")[0];
    assert!(finding.starts_with("report took 2"), "{finding}");
    assert!(finding.contains("(limit 50 ms, planner cost"), "{finding}");
    let plan = &out.step("plan")["value"];
    assert!(plan["cost"].as_f64().unwrap() > 0.0);
    assert_eq!(plan["plan"][0]["Plan"]["Node Type"], "Index Scan");
    assert!(plan["time_ms"].as_f64().unwrap() >= 0.0);
    let message = out.step("statements without pg_stat_statements")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("pg_stat_statements is not installed in this database; hint: add it to `shared_preload_libraries`"), "{message}");
}

fn touch(path: &Path, hours_ago: u64) {
    let stamp = format!("{} hours ago", hours_ago);
    let ok = Command::new("touch")
        .args(["-d", &stamp])
        .arg(path)
        .status()
        .unwrap();
    assert!(ok.success());
}

#[test]
fn backups_are_made_found_restored_and_drilled() {
    let db = PgDb::new("backup");
    db.sql("create table trades (id int primary key, symbol text); insert into trades select g, 'S' || g from generate_series(1, 250) g; create table empty_one (x int)");
    let my = MyDb::new("backup");
    my.sql("create table positions (id int primary key, qty int); insert into positions values (1, 10), (2, 20), (3, 30)");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("backups")).unwrap();
    std::fs::create_dir(dir.path().join("stale")).unwrap();
    std::fs::write(dir.path().join("stale/old.dump"), "x").unwrap();
    touch(&dir.path().join("stale/old.dump"), 30);
    let script = format!(
        r#"
        import "data" as data;
        step("back up", || db::backup("{pg}", "backups/trades.dump"));
        check("recent backup", || data::backup_recent("backups", "*.dump", 24));
        check("stale backup", || data::backup_recent("stale", 24));
        check("no backup", || data::backup_recent("backups", "*.sql", 24));
        step("lose rows", || db::connect("{pg}").execute("delete from trades where id > 200"));
        step("restore", || db::restore("{pg}", "backups/trades.dump"));
        check("postgres restores", || data::backup_restores("{pg}"));
        check("mariadb restores", || data::backup_restores("{my}"));
        step("drill", || db::backup_restore_test("{pg}"));
        "#,
        pg = db.url(),
        my = my.url()
    );
    let out = run_in(dir.path(), &script, &["--yes"], &[]);
    assert_eq!(out.code, 1, "{}", out.screen);
    let dump = dir.path().join("backups/trades.dump");
    assert!(std::fs::read(&dump).unwrap().starts_with(b"PGDMP"));
    assert_eq!(out.status("recent backup"), "passed");
    let stale = &out.findings("stale backup")[0];
    assert!(
        stale.starts_with("the newest backup, old.dump, is 30"),
        "{stale}"
    );
    assert!(stale.ends_with("hours old (limit 24 hours)"), "{stale}");
    assert_eq!(
        out.findings("no backup"),
        ["no backup matching *.sql in backups"]
    );
    assert_eq!(db.sql("select count(*) from trades"), "250");
    assert_eq!(out.status("postgres restores"), "passed");
    assert_eq!(out.status("mariadb restores"), "passed");
    let drill = &out.step("drill")["value"];
    assert_eq!(drill["ok"], true);
    assert_eq!(drill["tables"], 2);
    assert_eq!(drill["rows"], 250);
    let scratch = drill["scratch"].as_str().unwrap();
    let left = psql(
        5432,
        "postgres",
        &format!("select count(*) from pg_database where datname = '{scratch}'"),
    );
    assert_eq!(left, "0", "the scratch database {scratch} was not dropped");
    let passwords = out
        .events
        .iter()
        .filter(|e| e["type"] == "binding_start")
        .all(|e| {
            let args = e["args"].to_string();
            !args.contains("PGPASSWORD") && !args.contains("MYSQL_PWD")
        });
    assert!(passwords);
}

#[test]
fn a_restore_drill_without_the_right_to_create_databases_fails_and_says_why() {
    let db = PgDb::new("drillfail");
    let role = format!("r{}", &db.name[db.name.len() - 8..]);
    db.sql(&format!("create table kept (id int); insert into kept values (1), (2); create role {role} login; grant select on kept to {role}"));
    let url = format!("postgres://{role}@127.0.0.1:5432/{}", db.name);
    let script = format!(
        "import \"data\" as data;\ncheck(\"restores\", || data::backup_restores(\"{url}\"));\n"
    );
    let (_dir, out) = run(&script, &["--yes"]);
    db.sql(&format!("drop owned by {role}; drop role {role}"));
    assert_eq!(out.code, 1, "{}", out.screen);
    let message = out.step("restores")["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let expected = format!(
        "db::backup_restore_test on postgres://{role}@127.0.0.1:5432/{}: query failed; caused by: permission denied to create database",
        db.name
    );
    assert!(message.contains(&expected), "{message}");
}

#[test]
fn replication_and_slow_statements_on_a_primary_with_a_replica() {
    let pair = PgPair::start();
    psql(
        pair.primary,
        "postgres",
        "create extension pg_stat_statements",
    );
    psql(pair.primary, "postgres", "select pg_sleep(0.3)");
    let script = format!(
        r#"
        import "data" as data;
        check("primary streams to its replica", || data::replication_streaming("{p}", 5));
        check("replica streams from its primary", || data::replication_streaming("{r}", 5));
        check("standalone server has no replica", || data::replication_streaming("{pg}/postgres", 5));
        check("two replicas wanted", || data::replication_streaming("{p}", 5, 2));
        check("slow statements", || data::no_slow_queries("{p}", 100));
        check("no statement slower than a minute", || data::no_slow_queries("{p}", 60000));
        step("replication", || db::connect("{p}").replication());
        "#,
        p = pair.url(pair.primary),
        r = pair.url(pair.replica),
        pg = PG
    );
    let (_dir, out) = run(&script, &[]);
    assert_eq!(out.code, 1, "{}", out.screen);
    assert_eq!(
        out.status("primary streams to its replica"),
        "passed",
        "{}",
        out.screen
    );
    assert_eq!(
        out.status("replica streams from its primary"),
        "passed",
        "{}",
        out.screen
    );
    assert_eq!(
        out.findings("standalone server has no replica"),
        ["0 replicas streaming, expected at least 1"]
    );
    assert_eq!(
        out.findings("two replicas wanted"),
        ["1 replicas streaming, expected at least 2"]
    );
    let slow = out.findings("slow statements");
    assert!(slow.iter().any(|f| f.contains("pg_sleep")), "{slow:?}");
    assert_eq!(out.status("no statement slower than a minute"), "passed");
    let replication = &out.step("replication")["value"];
    assert_eq!(replication["role"], "primary");
    assert_eq!(replication["replicas"][0]["state"], "streaming");

    pair.stop_replica();
    let deadline = Instant::now() + Duration::from_secs(10);
    while psql(
        pair.primary,
        "postgres",
        "select count(*) from pg_stat_replication",
    ) != "0"
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(100));
    }
    let script = format!(
        "import \"data\" as data;\ncheck(\"after the replica stopped\", || data::replication_streaming(\"{}\", 5));\n",
        pair.url(pair.primary)
    );
    let (_dir, out) = run(&script, &[]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.findings("after the replica stopped"),
        ["0 replicas streaming, expected at least 1"]
    );
}

#[test]
fn plans_list_database_steps_without_connecting() {
    let script = r#"
        let db = db::connect("postgres://app:Plan-Pass-3@127.0.0.1:1/elson");
        step("clean sessions", || db.execute("delete from sessions"));
        check("migrations", || db.migrations().current == "x");
    "#;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("check.rhai"), script).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_runbook"))
        .args(["plan", "check.rhai"])
        .current_dir(dir.path())
        .env("RUNBOOK_STDLIB", stdlib())
        .output()
        .unwrap();
    let screen = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{screen}");
    assert!(
        screen.contains("clean sessions") && screen.contains("migrations"),
        "{screen}"
    );
    assert!(!screen.contains("Plan-Pass-3"));
}

/// A MariaDB primary and replica of the test's own, on free ports, killed on drop.
struct MyPair {
    _dir: tempfile::TempDir,
    servers: Vec<std::process::Child>,
    ports: [u16; 2],
}

fn mariadb_at(port: u16, sql: &str) -> Result<String, String> {
    let out = Command::new("mariadb")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "-uroot",
            "-N",
            "-B",
            "-e",
            sql,
        ])
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

impl MyPair {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Command::new("chown")
            .arg("mysql")
            .arg(dir.path())
            .status()
            .unwrap();
        let ports = [free_port(), free_port()];
        let mut servers = Vec::new();
        for (index, port) in ports.iter().enumerate() {
            let data = dir.path().join(format!("data{index}"));
            let installed = Command::new("mariadb-install-db")
                .arg(format!("--datadir={}", data.display()))
                .args([
                    "--user=mysql",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                ])
                .output()
                .unwrap();
            assert!(
                installed.status.success(),
                "{}",
                String::from_utf8_lossy(&installed.stderr)
            );
            let server = Command::new("mariadbd")
                .arg("--no-defaults")
                .arg(format!("--datadir={}", data.display()))
                .arg(format!("--socket={}/sock{index}", dir.path().display()))
                .arg(format!("--pid-file={}/pid{index}", dir.path().display()))
                .args([
                    format!("--port={port}"),
                    format!("--server-id={}", index + 1),
                ])
                .args([
                    "--user=mysql",
                    "--bind-address=127.0.0.1",
                    "--log-bin=binlog",
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            servers.push(server);
            let deadline = Instant::now() + Duration::from_secs(30);
            while mariadb_at(*port, "select 1").is_err() {
                assert!(
                    Instant::now() < deadline,
                    "mariadbd did not start on {port}"
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let follow = format!(
            "change master to master_host='127.0.0.1', master_port={}, master_user='root', master_password='', master_use_gtid=no; start slave",
            ports[0]
        );
        mariadb_at(ports[1], &follow).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !mariadb_at(ports[1], "show slave status")
            .unwrap_or_default()
            .contains("Yes\tYes")
        {
            assert!(
                Instant::now() < deadline,
                "the MariaDB replica never started"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            _dir: dir,
            servers,
            ports,
        }
    }

    fn url(&self, index: usize) -> String {
        format!("mysql://root@127.0.0.1:{}/mysql", self.ports[index])
    }
}

impl Drop for MyPair {
    fn drop(&mut self) {
        for server in &mut self.servers {
            let _ = server.kill();
            let _ = server.wait();
        }
    }
}

#[test]
fn mariadb_replication_streams_and_stops() {
    let pair = MyPair::start();
    let script = format!(
        r#"
        import "data" as data;
        check("primary", || data::replication_streaming("{p}", 5));
        check("replica", || data::replication_streaming("{r}", 5));
        step("replica status", || db::connect("{r}").replication());
        "#,
        p = pair.url(0),
        r = pair.url(1)
    );
    let (_dir, out) = run(&script, &[]);
    assert_eq!(out.code, 0, "{}", out.screen);
    let status = &out.step("replica status")["value"];
    assert_eq!(status["role"], "replica");
    assert_eq!(status["state"], "streaming");
    assert_eq!(
        status["primary"],
        format!("127.0.0.1:{}", pair.ports[0]).as_str()
    );

    mariadb_at(pair.ports[1], "stop slave").unwrap();
    let (_dir, out) = run(&script, &[]);
    assert_eq!(out.code, 1, "{}", out.screen);
    let findings = out.findings("replica");
    assert_eq!(
        findings[0],
        format!(
            "this replica is not streaming from 127.0.0.1:{} (state: stopped)",
            pair.ports[0]
        )
    );
}
