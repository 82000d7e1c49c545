//! The `redis::` bindings and the Redis checks of `stdlib/data.rhai`, run through the binary
//! against the Redis server on this machine (keys under a prefix of each test's own) and
//! against servers, sentinels and cluster nodes the tests start on free loopback ports.

#[path = "support/checks.rs"]
mod checks;
#[path = "support/redis_servers.rs"]
mod redis_servers;

use std::process::Command;

use checks::{Run, run_in};
use redis_servers::{SentinelSetup, Server, cli, sentinel_config, wait_until};
use serde_json::Value;

fn run_with(script: &str, args: &[&str], env: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    run_in(dir.path(), script, args, env)
}

fn run(script: &str, args: &[&str]) -> Run {
    run_with(script, args, &[])
}

fn prefix(tag: &str) -> String {
    format!("rbtest:{tag}:{}:", std::process::id())
}

#[test]
fn keys_info_role_and_memory_on_the_local_server() {
    let p = prefix("keys");
    let script = format!(
        r#"
        let r = redis::connect("redis://127.0.0.1:6379/0");
        check("ping", || r.ping().ok);
        step("info", || r.info("server"));
        step("role", || r.role());
        step("memory", || r.memory());
        step("write", || {{ r.set("{p}a", "v1", 300); r.set("{p}b", 42); }});
        step("read", || [r.get("{p}a"), r.ttl("{p}a"), r.get("{p}b"), r.ttl("{p}b"), r.get("{p}missing"), r.ttl("{p}missing")]);
        step("delete", || [r.del("{p}a"), r.del("{p}a"), r.del("{p}b")]);
        "#
    );
    let out = run(&script, &["--yes"]);
    assert_eq!(out.code, 0, "{}", out.screen);
    let info = &out.step("info")["value"];
    assert_eq!(info["tcp_port"], 6379);
    assert!(info["redis_version"].as_str().unwrap().contains('.'));
    assert_eq!(out.step("role")["value"]["role"], "master");
    assert!(out.step("memory")["value"]["used_memory"].as_i64().unwrap() > 0);
    let read = &out.step("read")["value"];
    assert_eq!(read[0], "v1");
    let ttl = read[1].as_i64().unwrap();
    assert!((1..=300).contains(&ttl), "{ttl}");
    assert_eq!(read[2], "42");
    assert_eq!(read[3], -1);
    assert_eq!(read[4], Value::Null);
    assert_eq!(read[5], -2);
    assert_eq!(out.step("delete")["value"], serde_json::json!([1, 0, 1]));
}

#[test]
fn a_dry_run_does_not_write_keys() {
    let p = prefix("dry");
    let script = format!(
        r#"
        let r = redis::connect("redis://127.0.0.1:6379");
        step("write", || r.set("{p}flag", "on"));
        step("delete", || r.del("{p}keep"));
        "#
    );
    cli(6379, &["SET", &format!("{p}keep"), "1"]);
    let out = run(&script, &["--dry-run"]);
    assert_eq!(out.code, 0, "{}", out.screen);
    assert_eq!(
        out.screen.matches("would run redis::").count(),
        2,
        "{}",
        out.screen
    );
    assert_eq!(cli(6379, &["EXISTS", &format!("{p}flag")]), "0");
    assert_eq!(cli(6379, &["GET", &format!("{p}keep")]), "1");
    cli(6379, &["DEL", &format!("{p}keep")]);
}

#[test]
fn connection_errors_name_the_target_and_hide_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "auth", "requirepass Real-Redis-Pass-1", false);
    let port = server.port;
    let script = format!(
        r#"
        check("refused", || redis::connect("redis://:Any-Pass-2@127.0.0.1:1").ping());
        check("wrong password", || redis::connect("redis://:Wrong-Redis-Pass-3@127.0.0.1:{port}").ping());
        check("password from a secret", || redis::connect(secret("REDIS_URL")).ping().ok);
        "#
    );
    let url = format!("redis://:Real-Redis-Pass-1@127.0.0.1:{port}");
    let out = run_with(&script, &[], &[("REDIS_URL", &url)]);
    assert_eq!(out.code, 1, "{}", out.screen);
    assert!(
        out.screen.contains("redis::connect on redis://127.0.0.1:1: cannot connect; caused by: Connection refused (os error 111) at check.rhai:2:36"),
        "{}",
        out.screen
    );
    let wrong = out.step("wrong password")["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        wrong.starts_with(&format!(
            "redis::connect on redis://127.0.0.1:{port}: cannot connect"
        )),
        "{wrong}"
    );
    assert!(
        wrong.contains("caused by: Password authentication failed"),
        "{wrong}"
    );
    assert_eq!(out.status("password from a secret"), "passed");
    for secret in ["Any-Pass-2", "Wrong-Redis-Pass-3", "Real-Redis-Pass-1"] {
        assert!(
            !out.screen.contains(secret) && !out.transcript.contains(secret),
            "{secret} leaked"
        );
    }
}

#[test]
fn cache_hit_ratio_fails_on_misses_and_passes_on_hits() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), "cache", "", false);
    let url = server.url();
    let check = format!(
        "import \"data\" as data;\ncheck(\"hit ratio\", || data::cache_hit_ratio_above(\"{url}\", 0.8));\n"
    );
    let out = run(&check, &[]);
    assert_eq!(
        out.findings("hit ratio"),
        [
            "only 0 cache lookups since the last reset; at least 100 are needed to judge the hit ratio"
        ]
    );
    cli(server.port, &["SET", "warm", "1"]);
    for _ in 0..60 {
        cli(server.port, &["GET", "cold"]);
    }
    for _ in 0..60 {
        cli(server.port, &["GET", "warm"]);
    }
    let out = run(&check, &[]);
    assert_eq!(out.code, 1, "{}", out.screen);
    assert_eq!(
        out.findings("hit ratio"),
        ["cache hit ratio is 50.0% (60 hits, 60 misses), below 80.0%"]
    );
    for _ in 0..300 {
        cli(server.port, &["GET", "warm"]);
    }
    let out = run(&check, &[]);
    assert_eq!(out.code, 0, "{}", out.screen);
    assert_eq!(out.status("hit ratio"), "passed");
}

#[test]
fn sentinel_checks_fail_without_quorum_or_replica_and_pass_when_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let lonely = Server::start(dir.path(), "lonely", "", false);
    let alone = Server::start(dir.path(), "alone", &sentinel_config(lonely.port, 2), true);
    let healthy = SentinelSetup::start(dir.path());
    let script = format!(
        r#"
        import "data" as data;
        check("broken", || data::redis_sentinel_healthy(["{alone}", "redis://127.0.0.1:1"]));
        check("healthy", || data::redis_high_availability(#{{sentinels: {urls}}}));
        let s = redis::sentinel("{first}");
        step("master", || s.master("elson"));
        step("address", || s.master_address("elson"));
        step("replicas", || s.replicas("elson"));
        step("sentinels", || s.sentinels("elson"));
        step("quorum", || s.ckquorum("elson"));
        step("replica role", || redis::connect("{replica}").role());
        step("primary role", || redis::connect("{primary}").role());
        "#,
        replica = healthy.replica.url(),
        primary = healthy.master.url(),
        alone = alone.url(),
        urls = healthy.urls(),
        first = healthy.sentinels[0].url()
    );
    let out = run(&script, &[]);
    assert_eq!(out.code, 1, "{}", out.screen);
    let broken = out.findings("broken");
    assert_eq!(broken.len(), 3, "{broken:?}");
    assert!(
        broken[0].starts_with(
            "sentinel unreachable: redis::sentinel on redis://127.0.0.1:1: cannot connect"
        ),
        "{broken:?}"
    );
    assert!(
        broken[1].starts_with("master elson: NOQUORUM"),
        "{broken:?}"
    );
    assert_eq!(broken[2], "master elson has no healthy replica");
    assert_eq!(out.status("healthy"), "passed", "{}", out.screen);
    let master = &out.step("master")["value"];
    assert_eq!(master["flags"], serde_json::json!(["master"]));
    assert_eq!(master["quorum"], 2);
    assert_eq!(master["num_slaves"], 1);
    assert_eq!(master["num_other_sentinels"], 2);
    let primary = format!("127.0.0.1:{}", healthy.master.port);
    assert_eq!(out.step("address")["value"], primary.as_str());
    assert_eq!(master["address"], primary.as_str());
    let replica = format!("127.0.0.1:{}", healthy.replica.port);
    assert_eq!(
        out.step("replicas")["value"][0]["address"],
        replica.as_str()
    );
    assert_eq!(out.step("sentinels")["value"].as_array().unwrap().len(), 2);
    assert_eq!(out.step("quorum")["value"]["ok"], true);
    let role = &out.step("replica role")["value"];
    assert_eq!(role["role"], "replica");
    assert_eq!(role["master"], primary.as_str());
    assert_eq!(role["state"], "connected");
    let role = &out.step("primary role")["value"];
    assert_eq!(role["replicas"][0]["address"], replica.as_str());
    drop(lonely);
}

#[test]
fn cluster_checks_fail_on_unassigned_slots_and_pass_once_created() {
    let dir = tempfile::tempdir().unwrap();
    let nodes: Vec<Server> = (0..3)
        .map(|i| {
            let config = format!(
                "cluster-enabled yes\ncluster-config-file nodes-{i}.conf\ncluster-node-timeout 5000"
            );
            Server::start(dir.path(), &format!("node{i}"), &config, false)
        })
        .collect();
    let urls: Vec<String> = nodes.iter().map(|n| format!("\"{}\"", n.url())).collect();
    let list = format!("[{}]", urls.join(", "));
    let check = format!(
        r#"
        import "data" as data;
        check("cluster", || data::redis_high_availability(#{{cluster: {list}}}));
        step("nodes", || redis::cluster({list}).nodes());
        "#
    );
    let out = run(&check, &[]);
    assert_eq!(out.code, 1, "{}", out.screen);
    assert_eq!(
        out.findings("cluster"),
        [
            "cluster state is fail",
            "only 0 of 16384 slots are assigned"
        ]
    );

    let addresses: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port))
        .collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stdout)
    );
    wait_until("the cluster to be ok", || {
        nodes
            .iter()
            .all(|n| cli(n.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    });
    let out = run(
        &format!(
            "{check}\nlet c = redis::cluster({list});\nstep(\"routed\", || {{ c.set(\"{{user}}:1\", \"ada\"); c.get(\"{{user}}:1\") }});\nstep(\"info\", || c.info());\n"
        ),
        &["--yes"],
    );
    assert_eq!(out.code, 0, "{}", out.screen);
    assert_eq!(out.status("cluster"), "passed");
    let info = &out.step("info")["value"];
    assert_eq!(info["cluster_slots_ok"], 16384);
    assert_eq!(info["cluster_known_nodes"], 3);
    let listed = out.step("nodes")["value"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 3);
    let served: i64 = listed
        .iter()
        .map(|n| n["slot_count"].as_i64().unwrap())
        .sum();
    assert_eq!(served, 16384);
    assert_eq!(out.step("routed")["value"], "ada");

    // One master gone: its slots are no longer served once the others mark it failed.
    let mut nodes = nodes;
    let gone = nodes.remove(2);
    drop(gone);
    wait_until("the others to mark the node failed", || {
        cli(nodes[0].port, &["CLUSTER", "INFO"]).contains("cluster_state:fail")
    });
    let out = run(&check, &[]);
    assert_eq!(out.code, 1, "{}", out.screen);
    let findings = out.findings("cluster");
    assert_eq!(findings[0], "cluster state is fail", "{findings:?}");
    assert!(
        findings
            .iter()
            .any(|f| f.contains("assigned slots are not served")),
        "{findings:?}"
    );
    assert!(
        findings
            .iter()
            .any(|f| f.starts_with("node 127.0.0.1:") && f.contains("is failing")),
        "{findings:?}"
    );
}

#[test]
fn redis_unreachable_is_a_finding() {
    let script = "import \"data\" as data;\ncheck(\"reachable\", || data::redis_reachable(\"redis://127.0.0.1:1\"));\ncheck(\"single server\", || data::redis_high_availability(#{}));\n";
    let out = run(script, &[]);
    assert_eq!(out.code, 1, "{}", out.screen);
    assert_eq!(
        out.findings("reachable"),
        [
            "redis::connect on redis://127.0.0.1:1: cannot connect: Connection refused (os error 111)"
        ]
    );
    assert!(out.findings("single server")[0].contains("not highly available"));
}
