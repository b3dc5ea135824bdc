//! The `admin` binary as a developer runs it, against DynamoDB Local (make test sets
//! DYNAMODB_ENDPOINT): exit codes, JSON output, one-line errors, help on every command.

use std::process::{Command, Output};

fn admin(table: &str, args: &[&str]) -> Output {
    let endpoint =
        std::env::var("DYNAMODB_ENDPOINT").expect("run under make test (DYNAMODB_ENDPOINT)");
    Command::new(env!("CARGO_BIN_EXE_admin"))
        .args(args)
        .env("DYNAMODB_ENDPOINT", endpoint)
        .env("TABLE_NAME", table)
        .env_remove("RUST_LOG")
        .output()
        .expect("admin runs")
}

/// What a `--json` command printed.
fn json_of(table: &str, args: &[&str]) -> serde_json::Value {
    serde_json::from_str(&stdout(&admin(table, args))).unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn unique_table() -> String {
    format!(
        "admin-cli-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}

#[test]
fn every_command_has_help() {
    for args in [
        vec!["--help"],
        vec!["orgs", "--help"],
        vec!["orgs", "create", "--help"],
        vec!["orgs", "list", "--help"],
        vec!["keys", "--help"],
        vec!["keys", "create", "--help"],
        vec!["keys", "list", "--help"],
        vec!["keys", "revoke", "--help"],
        vec!["keys", "rotate", "--help"],
        vec!["keys", "verify", "--help"],
        vec!["table", "create", "--help"],
        vec!["fixtures", "register", "--help"],
    ] {
        let output = admin("unused", &args);
        let text = stdout(&output);
        assert!(text.contains("Usage:"), "{args:?}: {text}");
    }
}

#[test]
fn a_key_lifecycle_through_the_cli() {
    let table = unique_table();
    assert!(stdout(&admin(&table, &["table", "create"])).contains("created"));
    assert!(stdout(&admin(&table, &["table", "create"])).contains("already exists"));
    stdout(&admin(
        &table,
        &["orgs", "create", "--id", "acme", "--name", "Acme Labs"],
    ));
    assert!(stdout(&admin(&table, &["orgs", "list"])).contains("Acme Labs"));

    let created: serde_json::Value = json_of(
        &table,
        &[
            "keys", "create", "--org", "acme", "--name", "iOS app", "--json",
        ],
    );
    let secret = created["key"].as_str().unwrap();
    let key_id = created["key_id"].as_str().unwrap();
    assert_eq!(created["org_id"], "acme");
    assert!(secret.starts_with(created["prefix"].as_str().unwrap()));

    let listed = stdout(&admin(&table, &["keys", "list", "--org", "acme"]));
    assert!(listed.contains(key_id) && listed.contains("iOS app") && !listed.contains(secret));

    let rotated: serde_json::Value = json_of(
        &table,
        &["keys", "rotate", key_id, "--grace", "1h", "--json"],
    );
    assert_eq!(rotated["old_key_id"], key_id);
    assert!(rotated["new"]["key"]
        .as_str()
        .unwrap()
        .starts_with("dfk_live_"));

    assert!(stdout(&admin(&table, &["keys", "revoke", key_id])).contains("revoked"));
    let again = admin(&table, &["keys", "revoke", key_id]);
    assert_eq!(again.status.code(), Some(2));
    let stderr = String::from_utf8(again.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("already revoked"));
}

#[test]
fn errors_are_one_line_and_a_non_zero_exit() {
    let table = unique_table();
    stdout(&admin(&table, &["table", "create"]));
    for (args, expected) in [
        (
            vec!["keys", "create", "--org", "ghost", "--name", "x"],
            "no org with id `ghost`",
        ),
        (vec!["keys", "revoke", "0123456789abcdef"], "no API key"),
        (
            vec!["orgs", "create", "--id", "Bad Id", "--name", "x"],
            "org ids are",
        ),
    ] {
        let output = admin(&table, &args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("admin: ") && stderr.contains(expected),
            "{stderr}"
        );
    }
    let unreachable = Command::new(env!("CARGO_BIN_EXE_admin"))
        .args(["orgs", "list"])
        .env("DYNAMODB_ENDPOINT", "http://127.0.0.1:9")
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(2));
    let stderr = String::from_utf8(unreachable.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("unreachable"), "{stderr}");
}

/// The deploy's smoke test key: it works now and stops by itself, even if nobody revokes it.
#[test]
fn a_key_created_with_expires_in_stops_working_by_itself() {
    let table = unique_table();
    stdout(&admin(&table, &["table", "create"]));
    let created: serde_json::Value = json_of(
        &table,
        &[
            "keys",
            "create",
            "--org",
            "smoke",
            "--name",
            "smoke test",
            "--create-org",
            "--expires-in",
            "2s",
            "--json",
        ],
    );
    let secret = created["key"].as_str().unwrap();
    let verify = || {
        let endpoint = std::env::var("DYNAMODB_ENDPOINT").unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_admin"))
            .args(["keys", "verify"])
            .env("DYNAMODB_ENDPOINT", endpoint)
            .env("TABLE_NAME", &table)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        writeln!(child.stdin.take().unwrap(), "{secret}").unwrap();
        child.wait().unwrap().code()
    };
    assert_eq!(verify(), Some(0), "active before it expires");
    let listed = stdout(&admin(
        &table,
        &["keys", "list", "--org", "smoke", "--json"],
    ));
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert!(listed[0]["expires_at"].is_string(), "{listed}");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert_eq!(verify(), Some(1), "refused once expired");
}

#[test]
fn fixtures_register_is_idempotent_and_local_only() {
    let table = unique_table();
    stdout(&admin(&table, &["table", "create"]));
    let first = stdout(&admin(&table, &["fixtures", "register"]));
    assert!(first.contains(": registered"), "{first}");
    let again = stdout(&admin(&table, &["fixtures", "register"]));
    assert!(again.contains("already registered"), "{again}");
    let keys = stdout(&admin(&table, &["keys", "list", "--org", "fixture-org"]));
    assert_eq!(keys.lines().count(), 2, "one key: {keys}");

    let against_aws = Command::new(env!("CARGO_BIN_EXE_admin"))
        .args(["fixtures", "register"])
        .env_remove("DYNAMODB_ENDPOINT")
        .env("TABLE_NAME", &table)
        .env("AWS_ACCESS_KEY_ID", "unused")
        .env("AWS_SECRET_ACCESS_KEY", "unused")
        .output()
        .unwrap();
    assert_eq!(against_aws.status.code(), Some(2));
    let stderr = String::from_utf8(against_aws.stderr).unwrap();
    assert!(stderr.contains("DynamoDB Local"), "{stderr}");
}

#[test]
fn an_orgs_total_rate_limit_is_set_and_shown_on_its_keys() {
    let table = unique_table();
    stdout(&admin(&table, &["table", "create"]));
    let created: serde_json::Value = json_of(
        &table,
        &[
            "keys",
            "create",
            "--org",
            "busy",
            "--name",
            "a",
            "--create-org",
            "--json",
        ],
    );
    let listed = |table: &str| -> serde_json::Value {
        json_of(table, &["keys", "list", "--org", "busy", "--json"])
    };
    assert_eq!(
        listed(&table)[0]["org_rate_limit"],
        400,
        "4 x the key's 100"
    );
    let set = stdout(&admin(
        &table,
        &["orgs", "set-total-rate-limit", "busy", "250"],
    ));
    assert!(set.contains("250 tokens/s (1 keys updated)"), "{set}");
    assert_eq!(listed(&table)[0]["org_rate_limit"], 250);
    assert_eq!(listed(&table)[0]["key_id"], created["key_id"]);
    stdout(&admin(
        &table,
        &["orgs", "set-total-rate-limit", "busy", "default"],
    ));
    assert_eq!(listed(&table)[0]["org_rate_limit"], 400);
    let help = stdout(&admin(&table, &["orgs", "set-total-rate-limit", "--help"]));
    assert!(help.contains("all the org's keys together"), "{help}");
}
