//! The deployment artefacts under `deploy/`: the Grafana dashboard and the Prometheus rules
//! use only metrics from `callhook::telemetry::metrics::CATALOGUE` (with the right types and
//! labels), `promtool` accepts and unit-tests the rules, every YAML and JSON file parses,
//! and the Docker, Kubernetes and systemd files keep callhook's runtime contract (port,
//! spool path, uid, probes, SIGTERM drain time).
//!
//! Needs `promtool`, `systemd-analyze` and a python3 with PyYAML:
//! `deploy/local/install-test-tools.sh` installs them. Without them these tests fail; they
//! never skip. (Only the kustomize rendering of the Kubernetes files is optional: it runs
//! where `kubectl` is installed; the suite does not install it, as Debian's
//! `kubernetes-client` carries a kustomize too old to be a fair check.)

#[path = "../common/mod.rs"]
mod common;

mod catalogue;
mod dashboard;
mod docker;
mod kubernetes;
mod prometheus;
mod promql;
mod systemd;
mod yaml;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

const INSTALL_HINT: &str =
    "run deploy/local/install-test-tools.sh (installs Debian's prometheus package and PyYAML)";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn deploy(rel: &str) -> PathBuf {
    root().join("deploy").join(rel)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn files_under(dir: &Path, exts: &[&str]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| exts.contains(&x))
            {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|d| d.join(tool).is_file()))
}

fn s<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v}"))
}

fn arr<'a>(v: &'a Value, what: &str) -> &'a Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what}: expected a list, got {v}"))
}

#[test]
fn install_test_tools_script_is_idempotent_and_satisfied() {
    let script = deploy("local/install-test-tools.sh");
    let out = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "bash -n: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Check-only mode: everything this suite needs must already be there.
    let out = Command::new("bash")
        .arg(&script)
        .env("CALLHOOK_TOOLS_NO_INSTALL", "1")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {INSTALL_HINT}",
        String::from_utf8_lossy(&out.stderr)
    );
}
