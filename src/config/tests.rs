use super::*;

fn write(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let p = dir.path().join("c.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn defaults_are_valid() {
    Config::default().validate().unwrap();
}

#[test]
fn file_values_apply_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        &dir,
        "[server]\nlisten = \"127.0.0.1:9000\"\nmax_body_bytes = 4096\n[spool]\ndurability = \"os\"\n",
    );
    let cfg = Config::load(Some(&p), &Overrides::default()).unwrap();
    assert_eq!(cfg.server.listen.port(), 9000);
    assert_eq!(cfg.spool.durability, Durability::Os);
    let o = Overrides {
        listen: Some("127.0.0.1:9001".parse().unwrap()),
        ..Default::default()
    };
    assert_eq!(
        Config::load(Some(&p), &o).unwrap().server.listen.port(),
        9001
    );
}

#[test]
fn unknown_keys_and_bad_values_name_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(&dir, "[server]\nlisten_typo = 1\n");
    let e = Config::load(Some(&p), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("listen_typo"), "{e}");
    let p = write(&dir, "[spool]\ndurability = \"sometimes\"\n");
    let e = Config::load(Some(&p), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("spool.durability"), "{e}");
    let p = write(&dir, "[server]\nmax_body_bytes = 1\n");
    let e = Config::load(Some(&p), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("server.max_body_bytes"), "{e}");
    let p = write(&dir, "[kafka.properties]\n\"acks\" = \"1\"\n");
    let e = Config::load(Some(&p), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("kafka.properties.\"acks\""), "{e}");
    // A type error names the file it came from.
    let p = write(&dir, "[server]\nmax_body_bytes = \"big\"\n");
    let e = Config::load(Some(&p), &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains(&p.display().to_string()), "{e}");
}

#[test]
fn kafka_properties_come_from_the_environment_with_their_dots() {
    let vars = [
        ("CALLHOOK_KAFKA__PROPERTIES__SASL__PASSWORD", "pw"),
        ("callhook_kafka__properties__security.protocol", "sasl_ssl"),
        ("CALLHOOK_KAFKA__BROKERS", "b:9092"),
        ("CALLHOOK_KAFKA__PROPERTIESX", "no"),
        ("OTHER_KAFKA__PROPERTIES__ACKS", "no"),
    ]
    .map(|(k, v)| (k.to_owned(), Some(v.to_owned())));
    let got = kafka::properties_from_env(vars).unwrap();
    assert_eq!(
        got,
        [
            ("sasl.password".to_owned(), "pw".to_owned()),
            ("security.protocol".to_owned(), "sasl_ssl".to_owned()),
        ]
    );
    assert!(kafka::is_properties_var(
        "KAFKA__PROPERTIES__SASL__PASSWORD"
    ));
    assert!(!kafka::is_properties_var("KAFKA__BROKERS"));
    let refused = |vars: &[(&str, Option<&str>)]| {
        kafka::properties_from_env(
            vars.iter()
                .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned))),
        )
        .unwrap_err()
        .to_string()
    };
    let e = refused(&[("CALLHOOK_KAFKA__PROPERTIES__", Some("x"))]);
    assert!(e.starts_with("CALLHOOK_KAFKA__PROPERTIES__"), "{e}");
    // A secret that failed to render must not quietly become no password.
    let e = refused(&[("CALLHOOK_KAFKA__PROPERTIES__SASL__PASSWORD", Some(""))]);
    assert!(e.contains("empty"), "{e}");
    let e = refused(&[("CALLHOOK_KAFKA__PROPERTIES__SASL__PASSWORD", None)]);
    assert!(e.contains("UTF-8"), "{e}");
    let e = refused(&[
        ("CALLHOOK_KAFKA__PROPERTIES__SASL__PASSWORD", Some("a")),
        ("CALLHOOK_KAFKA__PROPERTIES__SASL.PASSWORD", Some("b")),
    ]);
    assert!(e.contains("sasl.password"), "{e}");
}

#[test]
fn a_missing_tls_file_is_refused_before_serve_would_stop_on_it() {
    let mut c = Config::default();
    c.kafka.brokers = Some("127.0.0.1:9092".into());
    c.kafka
        .properties
        .insert("ssl.ca.location".into(), "/nonexistent/ca.pem".into());
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.contains("ssl.ca.location") && e.contains("/nonexistent/ca.pem"),
        "{e}"
    );
    c.kafka
        .properties
        .insert("ssl.ca.location".into(), "probe".into());
    c.validate().unwrap();
}

#[test]
fn absurd_retention_is_refused_not_overflowed() {
    let mut c = Config::default();
    c.spool.retention_hours = 5_124_095_576_030_432;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.starts_with("spool.retention_hours"), "{e}");
}

#[test]
fn every_body_let_in_fits_the_spool_queue_and_a_record() {
    // A body the server accepts must be storable: one spool record (64 MiB at most) and
    // room in the writer's queue.
    let mut c = Config::default();
    c.server.max_body_bytes = (32 << 20) + 1;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.starts_with("server.max_body_bytes"), "{e}");
    let mut c = Config::default();
    c.spool.queue_bytes = c.server.max_body_bytes as u64;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.starts_with("spool.queue_bytes"), "{e}");
    let mut c = Config::default();
    c.server.max_body_bytes = 32 << 20;
    c.spool.segment_bytes = 64 << 20;
    c.spool.queue_bytes = 64 << 20;
    c.validate().unwrap();
}

/// The forwarder's memory bound must leave room for a batch of Vonage-sized records.
#[test]
fn the_kafka_byte_budget_has_a_floor() {
    let mut c = Config::default();
    c.kafka.max_in_flight_bytes = 64 << 10;
    let e = c.validate().unwrap_err().to_string();
    assert!(e.starts_with("kafka.max_in_flight_bytes"), "{e}");
    c.kafka.max_in_flight_bytes = 1 << 20;
    c.validate().unwrap();
}

#[test]
fn kafka_settings_the_delivery_guarantee_rests_on_are_refused() {
    let with = |props: &[(&str, &str)]| {
        let mut c = Config::default();
        c.kafka.brokers = Some("127.0.0.1:9092".into());
        for (k, v) in props {
            c.kafka.properties.insert((*k).into(), (*v).into());
        }
        c.validate().and_then(|()| c.check_kafka_client())
    };
    // Refused by callhook, or by librdkafka's idempotent producer when one is created.
    for (k, v) in [
        ("delivery.report.only.error", "true"),
        ("enable.gapless.guarantee", "true"),
        ("transactional.id", "x"),
        ("internal.termination.signal", "9"),
        ("partitioner", "random"),
        ("sasl.mechanism", "OAUTHBEARER"),
        ("max.in.flight.requests.per.connection", "100"),
        ("retries", "0"),
        ("queuing.strategy", "lifo"),
    ] {
        let e = with(&[(k, v)]).unwrap_err().to_string();
        assert!(e.contains("kafka.properties"), "{k}: {e}");
    }
    // librdkafka's own values under idempotence, and ordinary tuning, are fine.
    for (k, v) in [
        ("max.in.flight.requests.per.connection", "5"),
        ("retries", "2147483647"),
        ("queue.buffering.max.messages", "1000000"),
        ("partitioner", "consistent_random"),
        ("client.id", "mine"),
    ] {
        with(&[(k, v)]).unwrap_or_else(|e| panic!("{k} = {v}: {e}"));
    }
    with(&[
        ("sasl.mechanism", "OAUTHBEARER"),
        ("enable.sasl.oauthbearer.unsecure.jwt", "true"),
    ])
    .unwrap();
}

/// With Kafka off, its files are not looked for: a pod whose Kafka environment names a CA
/// that is not mounted still starts with the spool as its sink.
#[test]
fn kafka_settings_are_checked_only_with_kafka_on() {
    let mut c = Config::default();
    c.kafka
        .properties
        .insert("ssl.ca.location".into(), "/nonexistent/ca.pem".into());
    c.validate().unwrap();
    c.check_kafka_client().unwrap();
    c.kafka.brokers = Some("127.0.0.1:9092".into());
    assert!(c.validate().is_err());
}

#[test]
fn records_that_would_be_malformed_are_refused() {
    let mut c = Config::default();
    c.kafka.brokers = Some("127.0.0.1:9092".into());
    c.kafka.ce_source = String::new();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.starts_with("kafka.ce_source"), "{e}");
    c.kafka.ce_source = "urn:callhook:eu west".into();
    assert!(c.validate().is_err());
    c.kafka.ce_source = "https://callhook.example.com/eu-west-1".into();
    c.validate().unwrap();
    c.kafka.topics.dlq = c.kafka.topics.voice_event.clone();
    let e = c.validate().unwrap_err().to_string();
    assert!(
        e.starts_with("kafka.topics.dlq") && e.contains("voice_event"),
        "{e}"
    );
}

#[test]
fn the_ops_listener_cannot_share_the_webhook_listeners_port() {
    let mut c = Config::default();
    for (listen, ops, ok) in [
        ("127.0.0.1:8080", "127.0.0.1:8080", false),
        ("0.0.0.0:8080", "127.0.0.1:8080", false),
        ("127.0.0.1:8080", "0.0.0.0:8080", false),
        ("127.0.0.1:8080", "127.0.0.1:9102", true),
        ("127.0.0.1:0", "127.0.0.1:0", true),
        ("127.0.0.1:8080", "10.0.0.1:8080", true),
    ] {
        c.server.listen = listen.parse().unwrap();
        c.server.ops_listen = Some(ops.parse().unwrap());
        assert_eq!(c.validate().is_ok(), ok, "{listen} / {ops}");
    }
}

/// A level `tracing` would read as a target name silences every log line; refused.
#[test]
fn a_log_level_that_is_not_one_is_refused() {
    for bad in ["warning", "inf", "callhook=debg", "info,rdkafka=loud"] {
        let mut c = Config::default();
        c.log.level = bad.into();
        let e = c.validate().unwrap_err().to_string();
        assert!(e.starts_with("log.level"), "{bad}: {e}");
    }
    for good in [
        "warn",
        "ERROR",
        "off",
        "callhook=debug,info",
        "callhook::spool=trace",
    ] {
        let mut c = Config::default();
        c.log.level = good.into();
        c.validate().unwrap_or_else(|e| panic!("{good}: {e}"));
    }
}
