//! The command line as a user meets it: check-config, config layering, tail filters.

mod common;
use std::process::Command;

use common::BIN;

fn check(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("check-config").args(args);
    for var in [
        "CALLHOOK_LISTEN",
        "CALLHOOK_DATA_DIR",
        "CALLHOOK_KAFKA_BROKERS",
        "CALLHOOK_CONFIG",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn shipped_example_config_is_valid() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/config/callhook.toml");
    let (code, out, err) = check(&["--config", path], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("[server]") && out.contains("[spool]"), "{out}");
}

#[test]
fn bad_config_exits_non_zero_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, "[spool]\nsegment_bytes = 10\n").unwrap();
    let (code, _, err) = check(&["--config", p.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("spool.segment_bytes"), "{err}");
    std::fs::write(&p, "[server]\nlisten = \"not an address\"\n").unwrap();
    let (code, _, err) = check(&["--config", p.to_str().unwrap()], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("server.listen"), "{err}");
    let (code, _, err) = check(&["--config", "/nonexistent/callhook.toml"], &[]);
    assert_eq!(code, 2);
    assert!(err.contains("not found"), "{err}");
    // A librdkafka property `serve` would refuse when creating its producer: refused here
    // (exit 2), not accepted and then a serve that exits 1 and restarts forever.
    for (key, value) in [("security.protocol", "bogus"), ("sasl_mechanism", "PLAIN")] {
        std::fs::write(
            &p,
            format!(
                "[kafka]\nbrokers = \"127.0.0.1:9\"\n[kafka.properties]\n\"{key}\" = \"{value}\"\n"
            ),
        )
        .unwrap();
        let (code, _, err) = check(&["--config", p.to_str().unwrap()], &[]);
        assert_eq!(code, 2, "{key}: {err}");
        assert!(
            err.contains("kafka.properties") && err.contains(key),
            "{err}"
        );
    }
}

#[test]
fn environment_overrides_file_and_flags_override_environment() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(
        &p,
        "[server]\nlisten = \"127.0.0.1:7000\"\nmax_body_bytes = 5000\n",
    )
    .unwrap();
    let cfg = p.to_str().unwrap();
    let (code, out, err) = check(
        &["--config", cfg],
        &[
            ("CALLHOOK_SERVER__MAX_BODY_BYTES", "6000"),
            ("CALLHOOK_SPOOL__DURABILITY", "os"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("max_body_bytes = 6000"), "{out}");
    assert!(out.contains("durability = \"os\""), "{out}");
    assert!(out.contains("listen = \"127.0.0.1:7000\""), "{out}");
    let (_, out, _) = check(
        &["--config", cfg, "--listen", "127.0.0.1:7002"],
        &[("CALLHOOK_LISTEN", "127.0.0.1:7001")],
    );
    assert!(out.contains("listen = \"127.0.0.1:7002\""), "{out}");
    let (_, out, _) = check(&["--config", cfg], &[("CALLHOOK_LISTEN", "127.0.0.1:7001")]);
    assert!(out.contains("listen = \"127.0.0.1:7001\""), "{out}");
    // Variables that are not nested keys are not configuration (Kubernetes injects
    // CALLHOOK_PORT and friends for a Service named callhook).
    let (code, _, err) = check(
        &["--config", cfg],
        &[
            ("CALLHOOK_PORT", "tcp://10.0.0.1:8080"),
            ("CALLHOOK_SERVICE_HOST", "10.0.0.1"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = check(&["--config", cfg], &[("CALLHOOK_SPOOL__NOPE", "1")]);
    assert_eq!(code, 2, "unknown env key refused");
    assert!(err.contains("nope"), "{err}");
}

#[test]
fn tail_rejects_unknown_kind_and_missing_spool() {
    let out = Command::new(BIN)
        .args([
            "tail",
            "--data-dir",
            "/nonexistent",
            "--kind",
            "voice.event",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN)
        .args(["tail", "--kind", "sms"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown kind"));
}

/// Credentials for Kafka come from the environment (a Kubernetes Secret, a systemd
/// credential), never the file: the dotted librdkafka names survive, the file's own
/// properties stay, and the output redacts the secret. SCRAM over TLS needs OpenSSL in
/// librdkafka, so this also shows the build has it.
#[test]
fn kafka_credentials_come_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(
        &p,
        "[kafka]\nbrokers = \"127.0.0.1:9\"\n[kafka.properties]\n\"client.id\" = \"from-file\"\n",
    )
    .unwrap();
    let (code, out, err) = check(
        &["--config", p.to_str().unwrap()],
        &[
            ("CALLHOOK_KAFKA__PROPERTIES__SECURITY__PROTOCOL", "sasl_ssl"),
            (
                "CALLHOOK_KAFKA__PROPERTIES__SASL__MECHANISM",
                "SCRAM-SHA-512",
            ),
            ("CALLHOOK_KAFKA__PROPERTIES__SASL__USERNAME", "svc"),
            (
                "CALLHOOK_KAFKA__PROPERTIES__SASL__PASSWORD",
                "hunter2-kafka",
            ),
            ("CALLHOOK_KAFKA__PROPERTIES__SSL.CA.LOCATION", "probe"),
        ],
    );
    assert_eq!(code, 0, "{err}");
    for line in [
        "\"security.protocol\" = \"sasl_ssl\"",
        "\"sasl.mechanism\" = \"SCRAM-SHA-512\"",
        "\"sasl.username\" = \"svc\"",
        "\"sasl.password\" = \"<redacted>\"",
        "\"ssl.ca.location\" = \"probe\"",
        "\"client.id\" = \"from-file\"",
    ] {
        assert!(out.contains(line), "{line} missing in:\n{out}");
    }
    assert!(
        !out.contains("hunter2") && !err.contains("hunter2"),
        "{out}{err}"
    );
    // A TLS file that is not there, or is not a certificate, stops check-config, not a
    // later serve.
    let not_pem = dir.path().join("ca.pem");
    std::fs::write(&not_pem, "not a certificate\n").unwrap();
    for ca in ["/nonexistent/ca.pem", not_pem.to_str().unwrap()] {
        let (code, _, err) = check(
            &["--config", p.to_str().unwrap()],
            &[
                ("CALLHOOK_KAFKA__PROPERTIES__SECURITY__PROTOCOL", "ssl"),
                ("CALLHOOK_KAFKA__PROPERTIES__SSL__CA__LOCATION", ca),
            ],
        );
        assert_eq!(code, 2, "{ca}: {err}");
        assert!(err.contains("ssl.ca.location"), "{err}");
    }
}

/// Logs that go to a journal, a container log or a file carry no colour escape codes.
#[test]
fn logs_to_a_pipe_are_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let seen = common::startup_log(
        Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path()),
        |_| {},
    );
    assert!(seen.iter().all(|l| !l.contains('\x1b')), "{seen:?}");
}

/// With no application configured every webhook is accepted unsigned: fine on loopback
/// for development, said loudly at startup on any other address.
#[test]
fn an_open_gateway_on_a_reachable_address_says_so() {
    let warned = |listen: &str| {
        let dir = tempfile::tempdir().unwrap();
        common::startup_log(
            Command::new(BIN)
                .args(["serve", "--listen", listen, "--data-dir"])
                .arg(dir.path()),
            |_| {},
        )
        .iter()
        .any(|l| l.contains("webhooks are accepted unsigned from anyone"))
    };
    assert!(warned("0.0.0.0:0"));
    assert!(!warned("127.0.0.1:0"));
}

/// An empty CALLHOOK_KAFKA_BROKERS (a deployment template left blank) counts as not set:
/// it must not silently turn off the fan-out the file configures. An empty data directory
/// is refused, loudly.
#[test]
fn empty_environment_overrides_leave_the_file_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("c.toml");
    std::fs::write(&p, "[kafka]\nbrokers = \"10.0.0.1:9092\"\n").unwrap();
    let config = ["--config", p.to_str().unwrap()];
    let (code, out, err) = check(&config, &[("CALLHOOK_KAFKA_BROKERS", "")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("brokers = \"10.0.0.1:9092\""), "{out}");
    let (code, _, err) = check(&config, &[("CALLHOOK_DATA_DIR", "")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--data-dir"), "{err}");
}

/// Records of a kind this build does not know (spooled by a newer build, then rolled
/// back): `tail` says it skips them, and `replay` also fails (exit 1), so nothing is left
/// behind without a word.
#[test]
fn tools_say_when_they_skip_a_kind_they_do_not_know() {
    use callhook::spool::{Durability, NewRecord, Spool, SpoolConfig};
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (spool, _) = Spool::open(SpoolConfig {
            dir: dir.path().join("spool"),
            durability: Durability::Os,
            segment_bytes: 1 << 20,
            disk_budget_bytes: 1 << 30,
            retention_age: None,
            retention_bytes: None,
            queue_capacity: 100,
            queue_bytes: 1 << 20,
            has_sink: false,
        })
        .unwrap();
        for kind in [3, 99, 3] {
            let rec = NewRecord {
                kind,
                is_query: false,
                received_us: 0,
                key: bytes::Bytes::from_static(b"CON-1"),
                app: bytes::Bytes::new(),
                etype: bytes::Bytes::from_static(b"started"),
                meta: bytes::Bytes::new(),
                body: bytes::Bytes::from_static(br#"{"uuid":"u","status":"started"}"#),
            };
            spool.append(rec).await.unwrap();
        }
        spool.shutdown().await;
    });
    let run = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .args(["--data-dir", dir.path().to_str().unwrap()])
            .output()
            .unwrap();
        let lines = String::from_utf8(out.stdout).unwrap().lines().count();
        let err = String::from_utf8(out.stderr).unwrap();
        (out.status.code(), lines, err)
    };
    let (code, lines, err) = run(&["tail"]);
    assert_eq!((code, lines), (Some(0), 2), "{err}");
    assert!(
        err.contains("record 1 has a kind this build does not know"),
        "{err}"
    );
    let (code, lines, err) = run(&["replay", "--from", "0", "--stdout"]);
    assert_eq!((code, lines), (Some(1), 2), "{err}");
    assert!(
        err.contains("1 records of a kind this build does not know"),
        "{err}"
    );
}
