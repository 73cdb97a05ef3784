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
    .map(|(k, v)| (k.to_owned(), v.to_owned()));
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
    let e =
        kafka::properties_from_env([("CALLHOOK_KAFKA__PROPERTIES__".to_owned(), "x".to_owned())])
            .unwrap_err()
            .to_string();
    assert!(e.starts_with("CALLHOOK_KAFKA__PROPERTIES__"), "{e}");
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
