//! Configuration: TOML text through `toml::from_str::<callhook::config::Config>` and
//! `Config::validate`, then what startup derives from a valid config.
//!
//! Input: the bytes as UTF-8 TOML (inputs that are not UTF-8 are skipped).
//!
//! Invariants: never panics (parsing, validation, compiling the answer plan, keying the
//! verifier, deriving the spool settings, rendering the effective config); a config that
//! validates yields spool settings whose retention age is exactly `retention_hours` hours;
//! `to_toml` renders it (no "cannot render") as TOML that parses back into a `Config` and
//! renders identically.
#![no_main]

use callhook::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(cfg) = toml::from_str::<Config>(text) else {
        return;
    };
    // Rendering must work for any parsed config, valid or not.
    let rendered = cfg.to_toml();
    if cfg.validate().is_err() {
        return;
    }
    cfg.answer_plan().expect("validated config: answer plan");
    cfg.verifier().expect("validated config: verifier");

    if !callhook_fuzz::known_open("config-retention-overflow") {
        let sc = cfg.spool_config();
        let hours = cfg.spool.retention_hours;
        let want = hours.checked_mul(3600).map(std::time::Duration::from_secs);
        if hours > 0 {
            assert_eq!(
                sc.retention_age, want,
                "retention_hours = {hours} gives the wrong retention age"
            );
        }
    }

    if !callhook_fuzz::known_open("config-render") {
        assert!(
            !rendered.starts_with("# cannot render"),
            "a valid config cannot be rendered: {rendered}"
        );
        let back: Config = toml::from_str(&rendered)
            .unwrap_or_else(|e| panic!("rendered config does not parse back: {e}\n{rendered}"));
        assert_eq!(back.to_toml(), rendered, "render is not stable");
    }
});
