//! A panic in the thread the gateway cannot run without (the spool writer) ends the
//! process, so its supervisor restarts it; a panic anywhere else does not (the Kafka
//! forwarder's ends its own thread only). Checked in a child process (this test binary run
//! again) with the hook `serve` installs.

use std::process::Command;
use std::time::Duration;

use callhook::shutdown::{CRITICAL_PANIC_EXIT, CRITICAL_THREADS, exit_on_critical_panic};

const CHILD: &str = "CALLHOOK_TEST_PANIC_THREAD";

#[test]
fn a_panic_in_a_critical_thread_ends_the_process() {
    if let Ok(name) = std::env::var(CHILD) {
        exit_on_critical_panic();
        let t = std::thread::Builder::new()
            .name(name)
            .spawn(|| panic!("injected by the test"))
            .unwrap();
        let _ = t.join();
        std::thread::sleep(Duration::from_millis(500));
        std::process::exit(0);
    }
    let mut cases: Vec<(&str, i32)> = CRITICAL_THREADS
        .iter()
        .map(|n| (*n, CRITICAL_PANIC_EXIT))
        .collect();
    cases.push(("kafka-forwarder", 0));
    cases.push(("tokio-runtime-worker", 0));
    for (name, want) in cases {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "a_panic_in_a_critical_thread_ends_the_process"])
            .env(CHILD, name)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(want),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
