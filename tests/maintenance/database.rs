//! The runbooks on the database: its weekly performance check, the quarterly restore test and
//! the disaster recovery review.

use super::*;

// ---------------------------------------------------------------------------------------
// Check database performance weekly

const PERFORMANCE_CHECKS: &[&str] = &[
    "The database answers quickly",
    "No slow queries recorded",
    "Critical queries run fast",
    "Connections stay below the server's limit",
    "The backend's connection pools fit the server's limit",
    "Replication lag is within limits",
];

/// A database like the application's: Alembic at head and a table with a few rows.
fn application_database(db: &postgres::PgDb) {
    db.sql(
        "create table alembic_version (version_num varchar(32) primary key);
         insert into alembic_version values ('3c9e1f2a7b4d');
         create table holdings (id serial primary key, user_id int not null, symbol text not null);
         insert into holdings (user_id, symbol) values (1, 'AAPL'), (1, 'MSFT'), (2, 'VTI');",
    );
}

#[test]
fn database_performance_passes_on_a_monitored_replicated_server_and_names_what_is_not() {
    let pair = postgres::PgPair::start();
    let db = postgres::PgDb::on(pair.primary, "perf");
    application_database(&db);
    db.sql("create extension pg_stat_statements");
    let ws = workspace();
    let settings = |max_ms: u32, pool: u32| {
        format!(
            "database_url = \"DATABASE_URL\"\nmax_db_latency_ms = 1000\nslow_query_ms = 5000\n\
             critical_queries = [{{ name = \"holdings of one user\", sql = \"select * from holdings where user_id = $1\", params = [1] }}, \
             {{ name = \"a slow report\", sql = \"select pg_sleep(0.2)\" }}]\n\
             critical_query_ms = {max_ms}\nmax_connection_usage = 0.8\ndb_pool_size = {pool}\n\
             max_instances = 3\nmax_replication_lag_seconds = 30\nmin_replicas = 1"
        )
    };
    configure(&ws, &settings(2000, 5), "");
    let env = [("DATABASE_URL", db.url())];

    // Everything here only reads: the dry run and the real run check the same things.
    for args in [&["--dry-run"][..], &[]] {
        let outcome = run(&ws, "database-performance", args, &env);
        outcome.expect(0, &all_passed(PERFORMANCE_CHECKS));
        assert!(outcome.outcomes("db::connect").iter().all(|o| o == "ok"));
    }

    // The local server records no statements and has no replica; the slow report is slow
    // and the pools are far too big for it.
    let local = postgres::PgDb::new("perfbroken");
    application_database(&local);
    configure(&ws, &settings(100, 1000), "");
    let broken = run(
        &ws,
        "database-performance",
        &[],
        &[("DATABASE_URL", local.url())],
    );
    broken.expect(
        1,
        &[
            ("The database answers quickly", "passed"),
            ("No slow queries recorded", "failed"),
            ("Critical queries run fast", "failed"),
            ("Connections stay below the server's limit", "passed"),
            (
                "The backend's connection pools fit the server's limit",
                "failed",
            ),
            ("Replication lag is within limits", "failed"),
        ],
    );
    assert!(broken.found("No slow queries recorded", "pg_stat_statements"));
    let slow = broken.findings("Critical queries run fast");
    assert_eq!(slow.len(), 1, "{slow:?}");
    assert!(
        slow[0].starts_with("a slow report took ") && slow[0].contains(" ms (limit 100 ms"),
        "{slow:?}"
    );
    assert!(broken.found(
        "The backend's connection pools fit the server's limit",
        "3 instances × pool of 1000 = 3000 connections"
    ));
    assert_eq!(
        broken.findings("Replication lag is within limits"),
        ["0 replicas streaming, expected at least 1"]
    );
}

// ---------------------------------------------------------------------------------------
// Test backup restoration quarterly

const BACKUP_RECENT: &str = "The newest backup is recent";
const RESTORE: &str = "Restore the newest backup into the scratch database";
const RESTORED_TABLES: &str = "The restored backup has every table of the live database";
const RESTORED_HEAD: &str = "The restored backup is at the expected migration";
const DRILL: &str = "A fresh dump restores with every table's rows";

/// A backup as the nightly job makes it: pg_dump's custom format, named by date.
fn nightly_backup(db: &postgres::PgDb, dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("elson-2026-12-01.dump");
    let out = Command::new("pg_dump")
        .args(["-Fc", "-f"])
        .arg(&file)
        .arg(db.url())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    file
}

fn restore_settings(backups: &Path, head: &str) -> String {
    format!(
        "database_url = \"DATABASE_URL\"\nrestore_database_url = \"RESTORE_DATABASE_URL\"\n\
         backup_dir = \"{}\"\nbackup_pattern = \"elson-*.dump\"\nmax_backup_age_hours = 26\n\
         migrations_head = \"{head}\"",
        backups.display()
    )
}

#[test]
fn backup_restoration_restores_the_newest_backup_and_a_fresh_dump_for_real_only() {
    let live = postgres::PgDb::new("live");
    application_database(&live);
    let scratch = postgres::PgDb::new("scratch");
    let ws = workspace();
    let backups = ws.path().join("backups");
    let backup = nightly_backup(&live, &backups);
    configure(&ws, &restore_settings(&backups, "3c9e1f2a7b4d"), "");
    let env = [
        ("DATABASE_URL", live.url()),
        ("RESTORE_DATABASE_URL", scratch.url()),
    ];
    let tables = |db: &postgres::PgDb| {
        db.sql("select count(*) from information_schema.tables where table_schema = 'public'")
    };

    // A dry run checks the backups and restores nothing.
    let dry = run(&ws, "backup-restore-test", &["--dry-run"], &env);
    dry.expect(
        0,
        &[
            (BACKUP_RECENT, "passed"),
            (RESTORE, "passed"),
            (RESTORED_TABLES, "skipped"),
            (RESTORED_HEAD, "skipped"),
            (DRILL, "skipped"),
        ],
    );
    assert_eq!(dry.outcomes("db::restore"), ["would_run"]);
    assert_eq!(dry.outcomes("db::backup_restore_test"), ["would_run"]);
    assert_eq!(tables(&scratch), "0", "nothing was restored");

    let real = run(&ws, "backup-restore-test", &[], &env);
    real.expect(
        0,
        &all_passed(&[
            BACKUP_RECENT,
            RESTORE,
            RESTORED_TABLES,
            RESTORED_HEAD,
            DRILL,
        ]),
    );
    assert_eq!(
        real.step(RESTORE)["value"]["backup"],
        "elson-2026-12-01.dump"
    );
    assert_eq!(
        scratch.sql("select string_agg(symbol, ',' order by id) from holdings"),
        "AAPL,MSFT,VTI"
    );
    assert_eq!(real.step(DRILL)["status"], "passed");

    // A backup three days old, and a live database that moved on since it was made.
    let old = Command::new("touch")
        .args(["-d", "3 days ago"])
        .arg(&backup)
        .status()
        .unwrap();
    assert!(old.success());
    live.sql("create table watchlists (id serial primary key, user_id int not null)");
    configure(&ws, &restore_settings(&backups, "4d5e6f7a8b9c"), "");
    let broken = run(&ws, "backup-restore-test", &[], &env);
    broken.expect(
        1,
        &[
            (BACKUP_RECENT, "failed"),
            (RESTORE, "passed"),
            (RESTORED_TABLES, "failed"),
            (RESTORED_HEAD, "failed"),
            (DRILL, "passed"),
        ],
    );
    let recent = broken.findings(BACKUP_RECENT);
    assert!(
        recent[0].starts_with("the newest backup, elson-2026-12-01.dump, is 7"),
        "{recent:?}"
    );
    assert_eq!(
        broken.findings(RESTORED_TABLES),
        ["table watchlists is missing from the restored backup elson-2026-12-01.dump"]
    );
    assert_eq!(
        broken.findings(RESTORED_HEAD),
        ["alembic migrations are at 3c9e1f2a7b4d, expected 4d5e6f7a8b9c"]
    );
}

// ---------------------------------------------------------------------------------------
// Verify disaster recovery plan quarterly

const DR_BACKUPS: &str = "Backups are recent enough for the recovery point objective";
const DR_REPLICATION: &str = "Database replication is streaming to a standby";
const DR_REDIS: &str = "Redis is highly available (Sentinel or Cluster)";
const DR_MANUAL: &[&str] = &[
    "Read through the disaster recovery plan",
    "Confirm the emergency contacts",
    "Run a restore drill",
    "Rehearse the failovers",
    "Record the review",
];

fn recovery_settings(backups: &Path, sentinels: &[String]) -> String {
    let sentinels: Vec<String> = sentinels.iter().map(|url| format!("\"{url}\"")).collect();
    format!(
        "dr_plan_url = \"https://wiki.elson.test/disaster-recovery\"\ndatabase_url = \"DATABASE_URL\"\n\
         backup_dir = \"{}\"\nbackup_pattern = \"elson-*.dump\"\nrecovery_point_hours = 24\n\
         max_replication_lag_seconds = 30\nmin_replicas = 1\nredis_sentinels = [{}]",
        backups.display(),
        sentinels.join(", ")
    )
}

#[test]
fn disaster_recovery_checks_what_a_machine_can_and_leaves_the_rest_pending() {
    let redis_dir = tempfile::tempdir().unwrap();
    // The standby database and the Sentinel deployment take a few seconds each: start both
    // at once.
    let (pair, sentinels) = std::thread::scope(|scope| {
        let sentinels = scope.spawn(|| redis_servers::SentinelSetup::start(redis_dir.path()));
        let pair = postgres::PgPair::start();
        (pair, sentinels.join().unwrap())
    });
    let db = postgres::PgDb::on(pair.primary, "recovery");
    application_database(&db);
    let ws = workspace();
    let backups = ws.path().join("backups");
    nightly_backup(&db, &backups);
    let urls: Vec<String> = sentinels.sentinels.iter().map(|s| s.url()).collect();
    configure(&ws, &recovery_settings(&backups, &urls), "");
    let env = [("DATABASE_URL", db.url())];
    let mut expected = all_passed(&[DR_BACKUPS, DR_REPLICATION, DR_REDIS]);
    expected.extend(DR_MANUAL.iter().map(|title| (*title, "pending")));
    for args in [&["--dry-run"][..], &[]] {
        run(&ws, "disaster-recovery", args, &env).expect(3, &expected);
    }
    let real = run(&ws, "disaster-recovery", &[], &env);
    assert!(
        real.instructions(DR_MANUAL[0])
            .contains("https://wiki.elson.test/disaster-recovery")
    );

    // No standby (the local server has none), no backup, and a single Redis server where
    // sentinels should answer.
    let local = postgres::PgDb::new("recoverybroken");
    let empty = ws.path().join("no-backups");
    std::fs::create_dir_all(&empty).unwrap();
    configure(
        &ws,
        &recovery_settings(&empty, &["redis://127.0.0.1:6379".to_owned()]),
        "",
    );
    let broken = run(
        &ws,
        "disaster-recovery",
        &[],
        &[("DATABASE_URL", local.url())],
    );
    let mut failed: Vec<(&str, &str)> = [DR_BACKUPS, DR_REPLICATION, DR_REDIS]
        .iter()
        .map(|t| (*t, "failed"))
        .collect();
    failed.extend(DR_MANUAL.iter().map(|title| (*title, "pending")));
    broken.expect(1, &failed);
    assert_eq!(
        broken.findings(DR_BACKUPS),
        [format!(
            "no backup matching elson-*.dump in {}",
            empty.display()
        )]
    );
    assert_eq!(
        broken.findings(DR_REPLICATION),
        ["0 replicas streaming, expected at least 1"]
    );
    assert!(
        broken.found(
            DR_REDIS,
            "on redis://127.0.0.1:6379: `SENTINEL MASTERS` failed"
        ),
        "{}",
        broken.message(DR_REDIS)
    );
}
