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
