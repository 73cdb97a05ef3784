//! The Docker image and compose stack: the Dockerfile keeps the runtime contract, its build
//! context is a complete Cargo package, its HEALTHCHECK works, and compose is consistent.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::common;
use crate::yaml::yaml1;
use crate::{arr, deploy, read, root, s};

/// Dockerfile instructions with continuation lines joined: (INSTRUCTION, arguments).
fn dockerfile() -> Vec<(String, String)> {
    let text = read(&deploy("docker/Dockerfile"));
    let mut out = Vec::new();
    let mut cur = String::new();
    for line in text.lines() {
        let t = line.trim();
        if cur.is_empty() && (t.is_empty() || t.starts_with('#')) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            cur.push_str(head);
            cur.push(' ');
            continue;
        }
        cur.push_str(t);
        let (ins, rest) = cur.split_once(' ').unwrap_or((&cur, ""));
        out.push((ins.to_ascii_uppercase(), rest.trim().to_owned()));
        cur.clear();
    }
    out
}

fn healthcheck_cmd() -> Vec<String> {
    let ins = dockerfile();
    let (_, hc) = ins
        .iter()
        .find(|(i, _)| i == "HEALTHCHECK")
        .expect("HEALTHCHECK");
    let json = &hc[hc.find("CMD [").expect("HEALTHCHECK ... CMD [..]") + 4..];
    serde_json::from_str(json).expect("HEALTHCHECK CMD is a JSON array")
}

#[test]
fn dockerfile_keeps_the_runtime_contract() {
    let ins = dockerfile();
    let get = |name: &str| -> Vec<&str> {
        ins.iter()
            .filter(|(i, _)| i == name)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    // ARG defaults before the first FROM, substituted into FROM lines.
    let mut args = BTreeMap::new();
    for (i, a) in &ins {
        if i == "FROM" {
            break;
        }
        if i == "ARG"
            && let Some((k, v)) = a.split_once('=')
        {
            args.insert(format!("${{{k}}}"), v.to_owned());
        }
    }
    let froms: Vec<String> = get("FROM")
        .into_iter()
        .map(|f| {
            args.iter()
                .fold(f.to_owned(), |acc, (k, v)| acc.replace(k, v))
        })
        .collect();
    assert_eq!(froms.len(), 2, "multi-stage: {froms:?}");
    assert!(
        froms[0].starts_with("rust:1-bookworm AS builder"),
        "{}",
        froms[0]
    );
    assert!(froms[1].starts_with("debian:bookworm-slim"), "{}", froms[1]);
    assert!(
        get("RUN")
            .iter()
            .any(|r| r.contains("cargo build --release --locked")),
        "release build with the lock file"
    );
    assert!(
        get("RUN")
            .iter()
            .any(|r| r.contains("--uid 10001") && r.contains("callhook")),
        "user callhook with uid 10001"
    );
    assert_eq!(get("USER"), ["10001:10001"]);
    assert_eq!(get("VOLUME"), [r#"["/var/lib/callhook"]"#]);
    assert_eq!(get("EXPOSE"), ["8080"]);
    assert_eq!(get("STOPSIGNAL"), ["SIGTERM"]);
    // Listen address and data dir by environment, so flags given to `docker run` can
    // override them (a second --listen would be refused) and tail/replay find the spool.
    let entry: Vec<String> = serde_json::from_str(get("ENTRYPOINT")[0]).unwrap();
    assert_eq!(entry, ["/usr/local/bin/callhook", "serve"]);
    let env = get("ENV").join(" ");
    assert!(
        env.contains("CALLHOOK_LISTEN=0.0.0.0:8080")
            && env.contains("CALLHOOK_DATA_DIR=/var/lib/callhook"),
        "{env}"
    );
    assert!(get("HEALTHCHECK")[0].contains("/healthz"));

    // Every shared library the binary links is in debian:bookworm-slim or installed by the
    // runtime stage: a new system library would otherwise fail only when the image runs.
    let ldd = std::process::Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_callhook"))
        .output()
        .expect("ldd (Debian's libc-bin)");
    assert!(ldd.status.success());
    let runtime_install = get("RUN")
        .into_iter()
        .filter(|r| r.contains("apt-get install"))
        .collect::<Vec<_>>()
        .join(" ");
    for line in String::from_utf8(ldd.stdout).unwrap().lines() {
        let lib = line.split_whitespace().next().unwrap_or_default();
        let lib = lib.rsplit('/').next().unwrap_or_default();
        let in_base = [
            "linux-vdso.so.1",
            "ld-linux-x86-64.so.2",
            "libc.so.6",
            "libm.so.6",
            "libgcc_s.so.1",
            "libz.so.1",
        ];
        if in_base.contains(&lib) || lib.starts_with("ld-linux") {
            continue;
        }
        let package = match lib {
            "libssl.so.3" | "libcrypto.so.3" => "libssl3",
            other => panic!("callhook links {other}: install its package in the runtime stage"),
        };
        assert!(
            runtime_install.contains(package),
            "callhook links {lib}; the runtime stage does not install {package}"
        );
    }

    for src in copy_sources() {
        assert!(
            root().join(&src).exists(),
            "COPY {src}: not in the repository"
        );
    }
}

/// What the builder stage copies from the context (COPY without --from), each let through
/// by Dockerfile.dockerignore.
fn copy_sources() -> Vec<String> {
    let ignore = read(&deploy("docker/Dockerfile.dockerignore"));
    let allowed: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    let mut out = Vec::new();
    for (ins, c) in dockerfile() {
        if ins != "COPY" || c.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = c.split_whitespace().collect();
        for src in &parts[..parts.len() - 1] {
            let src = src.trim_end_matches('/');
            assert!(
                allowed.contains(&src),
                "COPY {src}: excluded by Dockerfile.dockerignore"
            );
            out.push(src.to_owned());
        }
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        std::fs::copy(from, to).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    }
}

/// The files the image build copies make a complete Cargo package: the manifest parses and
/// every target it declares (benches included) is there, with the lock file.
#[test]
fn docker_build_context_is_a_complete_cargo_package() {
    let ctx = tempfile::tempdir().unwrap();
    for src in copy_sources() {
        copy_tree(&root().join(&src), &ctx.path().join(&src));
    }
    // Every target Cargo.toml declares must be in the context: cargo refuses to build a
    // package whose declared bench, test, example or bin file is missing.
    let manifest: toml::Value = toml::from_str(&read(&ctx.path().join("Cargo.toml"))).unwrap();
    for (section, dir) in [
        ("bench", "benches"),
        ("test", "tests"),
        ("example", "examples"),
        ("bin", "src/bin"),
    ] {
        for t in manifest
            .get(section)
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = t["name"].as_str().unwrap();
            let found = match t.get("path").and_then(toml::Value::as_str) {
                Some(p) => ctx.path().join(p).exists(),
                None => {
                    ctx.path().join(format!("{dir}/{name}.rs")).exists()
                        || ctx.path().join(format!("{dir}/{name}/main.rs")).exists()
                }
            };
            assert!(
                found,
                "[[{section}]] {name}: its file is not in the Docker build context"
            );
        }
    }
    if root().join("build.rs").exists() {
        assert!(
            ctx.path().join("build.rs").exists(),
            "build.rs not in the build context"
        );
    }
    if let Some(members) = manifest
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(toml::Value::as_array)
    {
        for m in members {
            let m = m.as_str().unwrap();
            assert!(
                ctx.path().join(m).exists(),
                "workspace member {m} not in the build context"
            );
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(&cargo)
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--offline",
        ])
        .current_dir(ctx.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the Docker build context is not a complete package: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let targets = arr(&meta["packages"][0]["targets"], "targets");
    assert!(
        targets
            .iter()
            .any(|t| t["name"] == "callhook" && t["kind"][0] == "bin"),
        "no callhook binary target"
    );
    assert!(
        ctx.path().join("Cargo.lock").is_file(),
        "--locked needs Cargo.lock"
    );
    included_files_are_in(ctx.path());
}

/// Every file `include_str!`/`include_bytes!` names under `src/` (directly, or through a
/// `fixture!("name")` macro built on one) is in the build context `ctx`: `cargo metadata`
/// does not read them, and the build would fail without them (`callhook simulate` embeds
/// `tests/fixtures/`).
fn included_files_are_in(ctx: &Path) {
    fn rs_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                rs_files(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    // The first string literal at or after `at`.
    fn literal(text: &str, at: usize) -> Option<&str> {
        let start = at + text[at..].find('"')? + 1;
        let len = text[start..].find('"')?;
        Some(&text[start..start + len])
    }
    let mut files = Vec::new();
    rs_files(&ctx.join("src"), &mut files);
    let mut checked = 0;
    for file in files {
        let text = read(&file);
        for (at, _) in text.match_indices("include_") {
            if !(text[at..].starts_with("include_str!") || text[at..].starts_with("include_bytes!"))
            {
                continue;
            }
            let window = &text[at..(at + 300).min(text.len())];
            // `concat!(env!("CARGO_MANIFEST_DIR"), "/tests/...")`: the path after it.
            let manifest = window
                .find("CARGO_MANIFEST_DIR\"")
                .map(|i| at + i + "CARGO_MANIFEST_DIR\"".len());
            let Some(rel) = literal(&text, manifest.unwrap_or(at)) else {
                continue;
            };
            let manifest = manifest.is_some();
            let base = if manifest {
                ctx.to_path_buf()
            } else {
                file.parent().unwrap().to_path_buf()
            };
            let path = base.join(rel.trim_start_matches('/'));
            if rel.ends_with('/') {
                // A directory prefix for a `fixture!("name")` macro: each name used.
                assert!(
                    path.is_dir(),
                    "{}: {rel} not in the build context",
                    file.display()
                );
                for (m, _) in text.match_indices("fixture!(\"") {
                    let name = literal(&text, m).unwrap();
                    assert!(
                        path.join(name).is_file(),
                        "{}: {rel}{name} not in the build context",
                        file.display()
                    );
                    checked += 1;
                }
            } else {
                assert!(
                    path.is_file(),
                    "{}: {rel} not in the build context",
                    file.display()
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "no included file found: the scan is broken");
}

/// The image's HEALTHCHECK (bash /dev/tcp, as the slim image has no curl) against a real
/// callhook: passes while it runs, fails on a port where nothing listens.
#[tokio::test]
async fn docker_healthcheck_probe_works_against_a_real_callhook() {
    let gw = common::Gateway::start("");
    let cmd = healthcheck_cmd();
    assert_eq!(cmd[0], "bash");
    assert!(cmd[2].contains("${CALLHOOK_HEALTH_PORT:-8080}"), "{cmd:?}");
    let run = |port: u16| {
        Command::new(&cmd[0])
            .args(&cmd[1..])
            .env("CALLHOOK_HEALTH_PORT", port.to_string())
            .output()
            .unwrap()
    };
    let out = run(gw.addr.port());
    assert!(
        out.status.success(),
        "healthcheck failed against a running callhook: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // With server.ops_listen, /healthz lives on the ops port only.
    let ops = common::Gateway::start("ops_listen = \"127.0.0.1:0\"\n");
    assert!(!run(ops.addr.port()).status.success());
    assert!(run(ops.ops.unwrap().port()).status.success());
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    assert!(
        !run(port).status.success(),
        "healthcheck passed with nothing listening"
    );
}

#[test]
fn compose_stack_is_consistent() {
    let compose = yaml1("docker/compose.yaml");
    let services = compose["services"].as_object().expect("services");
    for want in ["callhook", "kafka", "prometheus", "grafana"] {
        assert!(services.contains_key(want), "service {want}");
    }
    let ch = &services["callhook"];
    let env = &ch["environment"];
    assert_eq!(env["CALLHOOK_KAFKA_BROKERS"], "kafka:9092");
    assert_eq!(env["CALLHOOK_KAFKA__CREATE_TOPICS"], "true");
    assert_eq!(
        env["CALLHOOK_KAFKA__REPLICATION_FACTOR"], "1",
        "a single broker cannot hold 3 replicas"
    );
    let dir = deploy("docker");
    let ctx = dir.join(s(&ch["build"]["context"], "build context"));
    assert!(
        ctx.join(s(&ch["build"]["dockerfile"], "dockerfile"))
            .is_file(),
        "build context + dockerfile"
    );
    let grace = s(&ch["stop_grace_period"], "stop_grace_period");
    let secs: u64 = grace.trim_end_matches('s').parse().unwrap();
    assert!(
        secs >= 20,
        "stop_grace_period {grace} shorter than callhook's drain"
    );
    assert!(
        arr(&ch["volumes"], "volumes")
            .iter()
            .any(|v| s(v, "volume").ends_with(":/var/lib/callhook")),
        "the spool on a volume"
    );
    // Bind mounts point at files of this repository.
    for (name, svc) in services {
        for v in svc["volumes"].as_array().into_iter().flatten() {
            let src = s(v, "volume").split(':').next().unwrap();
            if src.starts_with('.') || src.starts_with('/') {
                assert!(dir.join(src).exists(), "{name}: bind mount {src} missing");
            } else {
                assert!(
                    compose["volumes"].get(src).is_some(),
                    "{name}: named volume {src} not declared"
                );
            }
        }
    }
    let kafka = &services["kafka"];
    assert!(s(&kafka["image"], "kafka image").starts_with("apache/kafka:"));
    assert_eq!(
        kafka["environment"]["KAFKA_ADVERTISED_LISTENERS"],
        "PLAINTEXT://kafka:9092"
    );
    let prom_cmd = arr(&services["prometheus"]["command"], "prometheus command");
    assert!(
        prom_cmd
            .iter()
            .any(|c| c == "--config.file=/etc/prometheus/prometheus.yml")
    );
}
