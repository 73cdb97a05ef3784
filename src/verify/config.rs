//! Configuration for signed-webhook verification: callhook's `[[applications]]` entries and the
//! `[signatures]` table. Validation lives here so every error names the offending key path.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::legacy_sig::LegacySigAlgorithm;

/// Vonage application id (a UUID in practice). Cheap to clone (`Arc<str>`) because every accepted
/// request carries one in its [`Verdict`](super::Verdict).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppId(Arc<str>);

impl AppId {
    /// Wraps an application id as written in config or a token claim.
    pub fn new(id: &str) -> Self {
        Self(Arc::from(id))
    }

    /// The id as text (for logs, metrics labels and Kafka headers).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AppId({:?})", &*self.0)
    }
}

impl fmt::Display for AppId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for AppId {
    fn from(id: &str) -> Self {
        Self::new(id)
    }
}

impl Serialize for AppId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for AppId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self(Arc::from(s)))
    }
}

/// A shared secret. `Debug` and `Serialize` are redacted, so `check-config` and logs can
/// show a configuration without ever printing a secret.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; only key setup should call this.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Vonage application capabilities callhook serves; routes declare which one they belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// Voice API: answer, fallback and event webhooks.
    Voice,
    /// Messages API v1: inbound and status webhooks.
    Messages,
    /// Client SDK / Conversation API `event_url`.
    Rtc,
}

impl Capability {
    /// Every capability, for per-capability tables.
    pub const ALL: [Capability; 3] = [Capability::Voice, Capability::Messages, Capability::Rtc];

    /// Lowercase name as in config and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Capability::Voice => "voice",
            Capability::Messages => "messages",
            Capability::Rtc => "rtc",
        }
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Capability::Voice => 0,
            Capability::Messages => 1,
            Capability::Rtc => 2,
        }
    }
}

/// What to do with signature failures for an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureMode {
    /// Do not verify; accept everything (ordered lowest so "strictest" is `max`).
    Off,
    /// Verify, accept failures but count and log them (rollout / secret-rotation safety net).
    Report,
    /// Verify and reject failures (401) and unsigned requests (503).
    Enforce,
}

impl SignatureMode {
    /// Metrics label for failures seen in this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            SignatureMode::Off => "off",
            SignatureMode::Report => "report",
            SignatureMode::Enforce => "enforce",
        }
    }
}

/// Policy for a GET `payload_hash` mismatch when everything else verified. Vonage's exact JSON
/// canonicalisation of GET query parameters is not confirmed (doc §2.2), so the default is report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GetHashMode {
    /// Reject like any other failure (when the application's mode is enforce).
    Enforce,
    /// Accept and report (counted with `mode="report"`).
    #[default]
    Report,
}

/// Legacy SMS API `sig` settings (doc §3); only for SMS API inbound/DLR webhooks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LegacySigConfig {
    /// Signature method chosen in the dashboard.
    pub algorithm: LegacySigAlgorithm,
    /// The account's signature secret.
    pub secret: Secret,
}

/// One `[[applications]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationConfig {
    /// Vonage application id; matched against the JWT `application_id` claim and `/apps/{id}` paths.
    pub id: AppId,
    /// Human-readable name for logs and dashboards.
    pub name: String,
    /// Account API key; the JWT's `api_key` claim selects which secrets verify it. Required when
    /// `signature_secrets` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Account signature secrets. Several are accepted at once so secrets can be rotated.
    #[serde(default)]
    pub signature_secrets: Vec<Secret>,
    /// Which webhook families this application may send.
    pub capabilities: Vec<Capability>,
    /// Failure policy; unset means enforce when any secret is configured, else off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signatures: Option<SignatureMode>,
    /// Policy for a GET-only `payload_hash` mismatch (escaping rules not confirmed by Vonage).
    #[serde(default)]
    pub get_hash: GetHashMode,
    /// Optional legacy SMS `sig` query signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_sig: Option<LegacySigConfig>,
}

impl ApplicationConfig {
    /// The mode in force: the explicit `signatures` value, else enforce when any secret (JWT or
    /// legacy) is configured, else off.
    pub fn effective_mode(&self) -> SignatureMode {
        match self.signatures {
            Some(mode) => mode,
            None if !self.signature_secrets.is_empty() || self.legacy_sig.is_some() => {
                SignatureMode::Enforce
            }
            None => SignatureMode::Off,
        }
    }

    /// Whether the application may send webhooks of `cap`.
    pub fn has_capability(&self, cap: Capability) -> bool {
        self.capabilities.contains(&cap)
    }
}

/// The `[signatures]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignaturesConfig {
    /// Accepted clock difference for `iat`, in seconds (both directions). Vonage gives no figure;
    /// 300 s is callhook's choice.
    pub max_skew_secs: u64,
    /// Capacity of the `jti` replay cache; the oldest entry is evicted when full.
    pub replay_cache_entries: usize,
}

impl Default for SignaturesConfig {
    fn default() -> Self {
        Self {
            max_skew_secs: 300,
            replay_cache_entries: 100_000,
        }
    }
}

/// Largest accepted `max_skew_secs` (one day): beyond that `iat` checks mean nothing.
pub const MAX_SKEW_SECS_LIMIT: u64 = 86_400;
/// Largest accepted `replay_cache_entries` (about 1.5 GB of entries would follow beyond this).
pub const REPLAY_CACHE_LIMIT: usize = 10_000_000;

/// A configuration problem found while building a [`Verifier`](super::Verifier), naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {problem}")]
pub struct VerifyConfigError {
    /// Key path, e.g. `applications[2].signature_secrets[0]`.
    pub path: String,
    /// What is wrong with it.
    pub problem: &'static str,
}

fn err(path: String, problem: &'static str) -> VerifyConfigError {
    VerifyConfigError { path, problem }
}

/// Checks everything the verifier relies on; the first problem wins.
pub(crate) fn validate(
    apps: &[ApplicationConfig],
    opts: &SignaturesConfig,
) -> Result<(), VerifyConfigError> {
    if opts.max_skew_secs == 0 || opts.max_skew_secs > MAX_SKEW_SECS_LIMIT {
        return Err(err(
            "signatures.max_skew_secs".into(),
            "must be between 1 and 86400",
        ));
    }
    if opts.replay_cache_entries == 0 || opts.replay_cache_entries > REPLAY_CACHE_LIMIT {
        return Err(err(
            "signatures.replay_cache_entries".into(),
            "must be between 1 and 10000000",
        ));
    }
    let mut ids = HashSet::with_capacity(apps.len());
    for (i, app) in apps.iter().enumerate() {
        let p = |key: &str| format!("applications[{i}].{key}");
        let id = app.id.as_str();
        if id.is_empty() {
            return Err(err(p("id"), "empty application id"));
        }
        if id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(err(
                p("id"),
                "application id must be printable ASCII without spaces (at most 128 bytes)",
            ));
        }
        if !ids.insert(id) {
            return Err(err(p("id"), "duplicate application id"));
        }
        if app.capabilities.is_empty() {
            return Err(err(
                p("capabilities"),
                "at least one capability is required",
            ));
        }
        for (j, s) in app.signature_secrets.iter().enumerate() {
            if s.expose().is_empty() {
                return Err(err(p(&format!("signature_secrets[{j}]")), "empty secret"));
            }
            if app.signature_secrets[..j].contains(s) {
                return Err(err(
                    p(&format!("signature_secrets[{j}]")),
                    "duplicate secret",
                ));
            }
        }
        match app.api_key.as_deref() {
            Some("") => return Err(err(p("api_key"), "empty api_key")),
            None if !app.signature_secrets.is_empty() => {
                return Err(err(
                    p("api_key"),
                    "api_key is required when signature_secrets is set",
                ));
            }
            _ => {}
        }
        if let Some(legacy) = &app.legacy_sig
            && legacy.secret.expose().is_empty()
        {
            return Err(err(p("legacy_sig.secret"), "empty secret"));
        }
        if app.effective_mode() != SignatureMode::Off
            && app.signature_secrets.is_empty()
            && app.legacy_sig.is_none()
        {
            return Err(err(
                p("signatures"),
                "enforce/report need signature_secrets or legacy_sig",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        #[serde(default)]
        applications: Vec<ApplicationConfig>,
        #[serde(default)]
        signatures: SignaturesConfig,
    }

    const SAMPLE: &str = r#"
[signatures]
max_skew_secs = 120
replay_cache_entries = 5000

[[applications]]
id = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
name = "support-line"
api_key = "a1b2c3d"
signature_secrets = ["new-secret", "old-secret"]
capabilities = ["voice", "messages", "rtc"]
signatures = "report"
get_hash = "enforce"
legacy_sig = { algorithm = "md5hash", secret = "legacy" }

[[applications]]
id = "bbbbbbbb-bbbb-cccc-dddd-0123456789ab"
name = "dev"
capabilities = ["voice"]
"#;

    #[test]
    fn parses_sample_and_defaults() {
        let f: File = toml::from_str(SAMPLE).unwrap();
        assert_eq!(f.signatures.max_skew_secs, 120);
        assert_eq!(f.signatures.replay_cache_entries, 5000);
        let a = &f.applications[0];
        assert_eq!(a.id.as_str(), "aaaaaaaa-bbbb-cccc-dddd-0123456789ab");
        assert_eq!(a.effective_mode(), SignatureMode::Report);
        assert_eq!(a.get_hash, GetHashMode::Enforce);
        assert_eq!(
            a.legacy_sig.as_ref().unwrap().algorithm,
            LegacySigAlgorithm::Md5Hash
        );
        let b = &f.applications[1];
        assert_eq!(b.effective_mode(), SignatureMode::Off);
        assert_eq!(b.get_hash, GetHashMode::Report);
        validate(&f.applications, &f.signatures).unwrap();
        let d: File = toml::from_str("").unwrap();
        assert_eq!(d.signatures, SignaturesConfig::default());
    }

    #[test]
    fn debug_and_serialize_redact_secrets() {
        let f: File = toml::from_str(SAMPLE).unwrap();
        let dbg = format!("{:?}", f.applications[0]);
        assert!(!dbg.contains("new-secret") && !dbg.contains("legacy\""));
        let json = serde_json::to_string(&f.applications[0]).unwrap();
        assert!(
            !json.contains("new-secret") && json.contains("<redacted>"),
            "{json}"
        );
    }

    #[test]
    fn rejects_unknown_keys() {
        let bad = SAMPLE.replace("get_hash", "get_hsah");
        assert!(toml::from_str::<File>(&bad).is_err());
        assert!(toml::from_str::<File>("[signatures]\nmax_skew = 3").is_err());
        let bad_mode = SAMPLE.replace("\"report\"", "\"loud\"");
        assert!(toml::from_str::<File>(&bad_mode).is_err());
    }

    fn app(id: &str) -> ApplicationConfig {
        ApplicationConfig {
            id: AppId::new(id),
            name: "x".into(),
            api_key: Some("k".into()),
            signature_secrets: vec![Secret::new("s")],
            capabilities: vec![Capability::Voice],
            signatures: None,
            get_hash: GetHashMode::Report,
            legacy_sig: None,
        }
    }

    fn problem(apps: &[ApplicationConfig], opts: &SignaturesConfig) -> String {
        validate(apps, opts).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_key_path() {
        let o = SignaturesConfig::default();
        let mut a = vec![app("a"), app("b"), app("c")];
        a[2].signature_secrets.push(Secret::new(""));
        assert_eq!(
            problem(&a, &o),
            "applications[2].signature_secrets[1]: empty secret"
        );
        a[2].signature_secrets = vec![Secret::new("x"), Secret::new("x")];
        assert_eq!(
            problem(&a, &o),
            "applications[2].signature_secrets[1]: duplicate secret"
        );
        let dup = vec![app("a"), app("a")];
        assert_eq!(
            problem(&dup, &o),
            "applications[1].id: duplicate application id"
        );
        let mut nokey = vec![app("a")];
        nokey[0].api_key = None;
        assert!(problem(&nokey, &o).starts_with("applications[0].api_key:"));
        let mut nocap = vec![app("a")];
        nocap[0].capabilities.clear();
        assert!(problem(&nocap, &o).starts_with("applications[0].capabilities:"));
        let mut enforce_nothing = vec![app("a")];
        enforce_nothing[0].signature_secrets.clear();
        enforce_nothing[0].signatures = Some(SignatureMode::Enforce);
        assert!(problem(&enforce_nothing, &o).starts_with("applications[0].signatures:"));
        let zero = SignaturesConfig {
            replay_cache_entries: 0,
            ..o.clone()
        };
        assert!(problem(&[], &zero).starts_with("signatures.replay_cache_entries:"));
        let skew = SignaturesConfig {
            max_skew_secs: 0,
            ..o
        };
        assert!(problem(&[], &skew).starts_with("signatures.max_skew_secs:"));
    }
}
