//! Signature failures: the error type with its fixed metric/JSON labels, and how failures are
//! counted and (rate-limited) logged.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::config::{AppId, SignatureMode};

/// Why a webhook failed verification. `Display` never contains secrets or token material, so it
/// is safe in logs; [`reason`](Self::reason) is the stable label for metrics and 401 bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum SignatureError {
    /// No `Authorization: Bearer` token (answer 503 when enforced so Vonage retries signed).
    #[error("no bearer token")]
    MissingToken,
    /// Not a decodable compact JWT; the detail is a fixed description, never input.
    #[error("malformed token: {0}")]
    MalformedToken(&'static str),
    /// Header `alg` is not exactly `HS256` (blocks `none` and RS256 key confusion).
    #[error("token algorithm is not HS256")]
    UnsupportedAlg,
    /// HMAC does not match any secret of the token's `api_key`.
    #[error("token signature does not verify")]
    BadSignature,
    /// No secret configured for the token's `api_key` (or the claim is missing).
    #[error("no signature secret for the token's api_key")]
    UnknownApiKey,
    /// `iss` is not `Vonage`.
    #[error("token issuer is not Vonage")]
    BadIssuer,
    /// `iat` missing or further than `max_skew_secs` from now.
    #[error("token iat missing or outside the allowed clock skew")]
    IatOutOfWindow,
    /// `exp` has passed.
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("token not yet valid")]
    NotYetValid,
    /// The application is not configured, or not for this route's capability.
    #[error("application not configured for this capability")]
    UnknownApplication,
    /// The token's application differs from the route's, or its secret is not that application's.
    #[error("token application does not match the route or signing secret")]
    ApplicationMismatch,
    /// `payload_hash` does not match the body (POST) or query (GET).
    #[error("payload_hash does not match the request payload")]
    PayloadHashMismatch,
    /// No `payload_hash` claim.
    #[error("token has no payload_hash claim")]
    MissingPayloadHash,
    /// The `jti` was already used for a different payload.
    #[error("token id already used for a different payload")]
    ReplayedJti,
    /// Legacy SMS `sig` missing or wrong.
    #[error("legacy sig parameter missing or wrong")]
    BadLegacySig,
}

impl SignatureError {
    /// Number of distinct reasons (size of per-reason tables).
    pub const COUNT: usize = 15;

    /// Stable label for metrics and the 401 `detail` field.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::MalformedToken(_) => "malformed_token",
            Self::UnsupportedAlg => "unsupported_alg",
            Self::BadSignature => "bad_signature",
            Self::UnknownApiKey => "unknown_api_key",
            Self::BadIssuer => "bad_issuer",
            Self::IatOutOfWindow => "iat_out_of_window",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::UnknownApplication => "unknown_application",
            Self::ApplicationMismatch => "application_mismatch",
            Self::PayloadHashMismatch => "payload_hash_mismatch",
            Self::MissingPayloadHash => "missing_payload_hash",
            Self::ReplayedJti => "replayed_jti",
            Self::BadLegacySig => "bad_legacy_sig",
        }
    }

    fn index(&self) -> usize {
        match self {
            Self::MissingToken => 0,
            Self::MalformedToken(_) => 1,
            Self::UnsupportedAlg => 2,
            Self::BadSignature => 3,
            Self::UnknownApiKey => 4,
            Self::BadIssuer => 5,
            Self::IatOutOfWindow => 6,
            Self::Expired => 7,
            Self::NotYetValid => 8,
            Self::UnknownApplication => 9,
            Self::ApplicationMismatch => 10,
            Self::PayloadHashMismatch => 11,
            Self::MissingPayloadHash => 12,
            Self::ReplayedJti => 13,
            Self::BadLegacySig => 14,
        }
    }
}

/// Seconds since the first failure log, offset by one so 0 means "never logged".
fn monotonic_secs() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs() + 1
}

/// Counts failures and logs at most one warning per reason per second, so a flood of forged
/// requests cannot flood the logs. The number of suppressed lines is carried on the next one.
#[derive(Debug, Default)]
pub struct FailureLog {
    last_logged: [AtomicU64; SignatureError::COUNT],
    suppressed: [AtomicU64; SignatureError::COUNT],
}

impl FailureLog {
    /// Records one failure seen in `mode` (enforce or report).
    pub fn record(&self, err: SignatureError, mode: SignatureMode, app: Option<&AppId>) {
        let reason = err.reason();
        metrics::counter!(
            "callhook_signature_failures_total",
            "reason" => reason,
            "mode" => mode.as_str()
        )
        .increment(1);
        if self.should_log(err.index(), monotonic_secs()) {
            let suppressed = self.suppressed[err.index()].swap(0, Ordering::Relaxed);
            tracing::warn!(
                reason,
                mode = mode.as_str(),
                app = app.map_or("-", AppId::as_str),
                suppressed,
                "webhook signature check failed"
            );
        } else {
            self.suppressed[err.index()].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// True for the first caller in each second for this reason.
    fn should_log(&self, idx: usize, now: u64) -> bool {
        let slot = &self.last_logged[idx];
        let prev = slot.load(Ordering::Relaxed);
        prev != now
            && slot
                .compare_exchange(prev, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [SignatureError; SignatureError::COUNT] = [
        SignatureError::MissingToken,
        SignatureError::MalformedToken("x"),
        SignatureError::UnsupportedAlg,
        SignatureError::BadSignature,
        SignatureError::UnknownApiKey,
        SignatureError::BadIssuer,
        SignatureError::IatOutOfWindow,
        SignatureError::Expired,
        SignatureError::NotYetValid,
        SignatureError::UnknownApplication,
        SignatureError::ApplicationMismatch,
        SignatureError::PayloadHashMismatch,
        SignatureError::MissingPayloadHash,
        SignatureError::ReplayedJti,
        SignatureError::BadLegacySig,
    ];

    #[test]
    fn reasons_unique_and_indices_dense() {
        let mut reasons: Vec<_> = ALL.iter().map(|e| e.reason()).collect();
        reasons.sort_unstable();
        reasons.dedup();
        assert_eq!(reasons.len(), SignatureError::COUNT);
        for (i, e) in ALL.iter().enumerate() {
            assert_eq!(e.index(), i);
        }
    }

    #[test]
    fn rate_limit_once_per_second_per_reason() {
        let log = FailureLog::default();
        assert!(log.should_log(3, 10));
        assert!(!log.should_log(3, 10));
        assert!(log.should_log(4, 10));
        assert!(log.should_log(3, 11));
        log.record(SignatureError::BadSignature, SignatureMode::Enforce, None);
        log.record(SignatureError::BadSignature, SignatureMode::Enforce, None);
        assert!(log.suppressed[3].load(Ordering::Relaxed) >= 1);
    }
}
