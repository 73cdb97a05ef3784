//! The systemd unit: hardened, with the spool, credentials, limits and stop timeout callhook
//! needs; `systemd-analyze` (installed by `deploy/local/install-test-tools.sh`) verifies it,
//! scores its exposure and expands its system call filter.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use crate::common;
use crate::{deploy, on_path, read};

/// `[Section]` -> key -> every value given (systemd keys may repeat).
fn systemd_unit(text: &str) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if let Some(sec) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            section = sec.to_owned();
            continue;
        }
        let (k, v) = t
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {t}"));
        assert!(!section.is_empty(), "{k} outside a section");
        out.entry(section.clone())
            .or_default()
            .entry(k.trim().to_owned())
            .or_default()
            .push(v.trim().to_owned());
    }
    out
}

#[test]
fn systemd_unit_is_hardened_and_verifies() {
    let path = deploy("systemd/callhook.service");
    let text = read(&path);
    let unit = systemd_unit(&text);
    let svc = &unit["Service"];
    let one = |k: &str| -> &str {
        let v = svc
            .get(k)
            .unwrap_or_else(|| panic!("[Service] {k}= missing"));
        v.last().unwrap()
    };
    let exec = one("ExecStart");
    assert!(exec.contains(" serve ") && exec.contains("--data-dir /var/lib/callhook"));
    // The dynamic user cannot read a root-only config file: it comes as a credential.
    assert!(exec.contains("--config %d/callhook.toml"), "{exec}");
    assert_eq!(
        one("LoadCredential"),
        "callhook.toml:/etc/callhook/callhook.toml"
    );
    // A failing ExecStartPre is restarted whatever RestartPreventExitStatus= says.
    assert!(!svc.contains_key("ExecStartPre"));
    assert_eq!(one("RestartPreventExitStatus"), "2");
    assert_eq!(
        one("StateDirectory"),
        "callhook",
        "the spool in /var/lib/callhook"
    );
    assert!(one("DynamicUser") == "yes" || svc.contains_key("User"));
    for (k, v) in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("KillSignal", "SIGTERM"),
        ("Restart", "on-failure"),
    ] {
        assert_eq!(one(k), v, "{k}");
    }
    let families: BTreeSet<&str> = one("RestrictAddressFamilies").split_whitespace().collect();
    assert_eq!(families, BTreeSet::from(["AF_INET", "AF_INET6", "AF_UNIX"]));
    assert!(
        svc["SystemCallFilter"]
            .iter()
            .any(|f| f == "@system-service")
    );
    let nofile: u64 = one("LimitNOFILE").parse().unwrap();
    assert!(
        nofile > 20_000,
        "LimitNOFILE {nofile} below max_connections (20,000)"
    );
    let stop: u64 = one("TimeoutStopSec").trim_end_matches('s').parse().unwrap();
    assert!(
        stop >= 20,
        "TimeoutStopSec {stop} shorter than the drain (10 s + 5 s)"
    );
    assert!(unit["Install"].contains_key("WantedBy"));

    assert!(
        on_path("systemd-analyze"),
        "systemd-analyze is missing: run deploy/local/install-test-tools.sh (Debian's systemd)"
    );
    // The system call filter leaves callhook what it uses: `sched_setscheduler` puts its
    // background threads under SCHED_BATCH (`background_threads = "batch"`, the default),
    // and `@resources`, which the unit denies, holds it.
    let allowed = syscall_filter(&svc["SystemCallFilter"]);
    for call in [
        "sched_setscheduler",
        "fdatasync",
        "pwritev",
        "epoll_wait",
        "prlimit64",
    ] {
        assert!(allowed.contains(call), "SystemCallFilter denies {call}");
    }
    // verify needs the binaries to exist: point the unit at the one cargo built.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("callhook.service");
    std::fs::write(&copy, text.replace("/usr/local/bin/callhook", common::BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("callhook.service:"),
        "systemd-analyze verify: {stderr}"
    );
    // Exposure score (0 = locked down, 10 = none): keep it well into "OK".
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze security (threshold 2.0):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The system calls a unit's `SystemCallFilter=` lines allow, applied in order (an allow
/// list first, then `~` lines taking calls out and plain ones putting them back), groups
/// expanded by `systemd-analyze syscall-filter`.
fn syscall_filter(lines: &[String]) -> BTreeSet<String> {
    fn expand(name: &str, out: &mut BTreeSet<String>) {
        if !name.starts_with('@') {
            out.insert(name.to_owned());
            return;
        }
        let listed = Command::new("systemd-analyze")
            .args(["syscall-filter", name])
            .output()
            .unwrap();
        assert!(
            listed.status.success(),
            "systemd-analyze syscall-filter {name}"
        );
        for l in String::from_utf8_lossy(&listed.stdout).lines().skip(1) {
            let l = l.trim();
            if !l.is_empty() && !l.starts_with('#') {
                expand(l, out);
            }
        }
    }
    assert!(
        lines.first().is_some_and(|l| !l.starts_with('~')),
        "the filter starts as an allow list"
    );
    let mut allowed = BTreeSet::new();
    for line in lines {
        let (deny, names) = match line.strip_prefix('~') {
            Some(rest) => (true, rest),
            None => (false, line.as_str()),
        };
        let mut calls = BTreeSet::new();
        for name in names.split_whitespace() {
            expand(name, &mut calls);
        }
        if deny {
            allowed.retain(|c| !calls.contains(c));
        } else {
            allowed.extend(calls);
        }
    }
    allowed
}
