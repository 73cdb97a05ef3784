//! Signed-webhook verification for Vonage Voice, Messages and RTC (reference doc §2, §3).
//!
//! [`Verifier::new`] does all key setup once; [`Verifier::verify`] turns one request into a
//! [`Verdict`] the HTTP layer maps to accept / 503 / 401. Policy, in short:
//! - No applications configured: accept everything unverified (local development).
//! - The application in force is the one named by the verified token's `application_id` claim
//!   (or the `/apps/{id}` path). Before a token is verified, the route's mode is the path app's,
//!   or the strictest mode among applications with the route's capability, so a forged token
//!   naming a lenient application cannot bypass a strict one on a shared route.
//! - Enforce: failures → [`Verdict::Reject`], missing token → [`Verdict::Unsigned`].
//!   Report: accept with the failure attached. Off: accept without checking.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use subtle::ConstantTimeEq;

pub mod config;
mod error;
mod jwt;
mod keyring;
pub mod legacy_sig;
pub mod payload_hash;
mod replay;
#[cfg(test)]
mod tests;

pub use config::{
    AppId, ApplicationConfig, Capability, GetHashMode, LegacySigConfig, Secret, SignatureMode,
    SignaturesConfig, VerifyConfigError,
};
pub use error::SignatureError;
pub use legacy_sig::{LegacySigAlgorithm, legacy_signature, verify_legacy_sig};

use error::FailureLog;
use keyring::{Key, Keyring};
use payload_hash::{Hash256, JsonEscaping};
use replay::{ReplayCache, ReplayOutcome};

/// What the HTTP layer knows about one webhook request.
#[derive(Clone, Copy)]
pub struct SignedRequest<'a> {
    /// Capability of the route the request arrived on.
    pub capability: Capability,
    /// Raw `Authorization` header value, if any.
    pub authorization: Option<&'a [u8]>,
    /// Raw POST body (empty for GET).
    pub body: &'a [u8],
    /// Raw query string of a GET webhook (without `?`). `Some` selects the GET `payload_hash`
    /// rule; pass `None` for POST even if the URL has a query, since Vonage hashes the body.
    pub query: Option<&'a str>,
    /// Application id from a `/apps/{id}/webhooks/...` path, if the route has one.
    pub path_app: Option<&'a str>,
    /// Current time, unix seconds (a parameter so tests and benches control the clock).
    pub now_unix: i64,
}

impl fmt::Debug for SignedRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The token is a bearer credential for its replay window: never print it.
        f.debug_struct("SignedRequest")
            .field("capability", &self.capability)
            .field("authorization", &self.authorization.map(|_| "<redacted>"))
            .field("body_len", &self.body.len())
            .field("query", &self.query)
            .field("path_app", &self.path_app)
            .field("now_unix", &self.now_unix)
            .finish()
    }
}

/// Outcome of verification, already resolved against the application's mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accept. `app` is the attributed application (verified token or path), if known;
    /// `report` is a failure seen in report mode (already counted and logged).
    Accept {
        /// Attributed application.
        app: Option<AppId>,
        /// Failure tolerated by report mode (or a GET-only hash mismatch under `get_hash = "report"`).
        report: Option<SignatureError>,
    },
    /// No token on a route that requires one → 503, so Vonage retries (and signs the retry).
    Unsigned,
    /// Enforced failure → 401 `{"error":"invalid_signature","detail": err.reason()}`.
    Reject(SignatureError),
}

#[derive(Debug)]
struct AppState {
    id: AppId,
    caps: [bool; 3],
    mode: SignatureMode,
    get_hash: GetHashMode,
    legacy: Option<LegacySigConfig>,
}

/// A failure plus the application attributed by a verified token before it happened.
struct Failure {
    err: SignatureError,
    app: Option<usize>,
}

impl From<SignatureError> for Failure {
    fn from(err: SignatureError) -> Self {
        Self { err, app: None }
    }
}

struct Verified {
    app: Option<usize>,
    soft: Option<SignatureError>,
}

/// Verifies signed webhooks for the configured applications. Build once, share (`Arc`) across
/// request handlers; `verify` takes `&self` and is safe to call concurrently.
pub struct Verifier {
    apps: Vec<AppState>,
    by_id: HashMap<Box<str>, usize>,
    keyring: Keyring,
    replay: ReplayCache,
    max_skew: i64,
    /// Strictest mode among applications with each capability (used before attribution);
    /// for a capability no application has, the strictest of all.
    route_mode: [SignatureMode; 3],
    failures: FailureLog,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("apps", &self.apps.iter().map(|a| &a.id).collect::<Vec<_>>())
            .field("keyring", &self.keyring)
            .field("max_skew", &self.max_skew)
            .field("route_mode", &self.route_mode)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Validates the configuration and keys every secret; errors name the offending key path.
    pub fn new(
        apps: &[ApplicationConfig],
        opts: &SignaturesConfig,
    ) -> Result<Verifier, VerifyConfigError> {
        config::validate(apps, opts)?;
        let keyring = Keyring::build(apps)?;
        let mut route_mode = [SignatureMode::Off; 3];
        let mut by_id = HashMap::with_capacity(apps.len());
        let mut states = Vec::with_capacity(apps.len());
        for (i, app) in apps.iter().enumerate() {
            let mode = app.effective_mode();
            let mut caps = [false; 3];
            for cap in &app.capabilities {
                caps[cap.index()] = true;
                route_mode[cap.index()] = route_mode[cap.index()].max(mode);
            }
            by_id.insert(Box::from(app.id.as_str()), i);
            states.push(AppState {
                id: app.id.clone(),
                caps,
                mode,
                get_hash: app.get_hash,
                legacy: app.legacy_sig.clone(),
            });
        }
        // A capability no application has: nothing may legitimately send to its routes,
        // so they get the strictest mode of all (enforce unless every application is
        // off or report). Opening them takes an application with that capability and
        // `signatures = "off"`.
        let strictest = states
            .iter()
            .map(|a| a.mode)
            .max()
            .unwrap_or(SignatureMode::Off);
        for (i, mode) in route_mode.iter_mut().enumerate() {
            if !states.iter().any(|a| a.caps[i]) {
                *mode = strictest;
            }
        }
        Ok(Verifier {
            apps: states,
            by_id,
            keyring,
            replay: ReplayCache::new(opts.replay_cache_entries),
            // Validation caps the skew at one day, so this conversion cannot saturate.
            max_skew: i64::try_from(opts.max_skew_secs).unwrap_or(i64::MAX),
            route_mode,
            failures: FailureLog::default(),
        })
    }

    /// Capabilities no application lists, whose routes take the strictest mode
    /// configured: logged once at startup, since it can surprise (unsigned requests to
    /// them are refused).
    pub fn closed_capabilities(&self) -> impl Iterator<Item = (Capability, SignatureMode)> + '_ {
        Capability::ALL
            .iter()
            .enumerate()
            .filter(|&(i, _)| !self.apps.is_empty() && !self.apps.iter().any(|a| a.caps[i]))
            .map(|(i, &cap)| (cap, self.route_mode[i]))
            .filter(|&(_, mode)| mode != SignatureMode::Off)
    }

    /// Verifies one JWT-signed webhook (doc §2.4) and applies the mode policy.
    pub fn verify(&self, req: &SignedRequest<'_>) -> Verdict {
        self.judge(req, false)
    }

    /// The refusal a request gets on its token alone, for a body still arriving: everything
    /// but the payload hash and the replay cache is checked, and `Some` comes back only when
    /// the route enforces signatures and the token (or its absence) already fails there.
    /// So a client that cannot sign cannot hold the budget for slow bodies while it trickles
    /// one in. `None` records nothing; the full [`verify`](Self::verify) runs once the
    /// body is in.
    pub fn refuse_early(&self, req: &SignedRequest<'_>) -> Option<Verdict> {
        match self.judge(req, true) {
            v @ (Verdict::Reject(_) | Verdict::Unsigned) => Some(v),
            Verdict::Accept { .. } => None,
        }
    }

    /// `verify`, or with `head_only` the checks that need no body, recording only refusals
    /// (a later `verify` records the rest).
    fn judge(&self, req: &SignedRequest<'_>, head_only: bool) -> Verdict {
        if self.apps.is_empty() {
            return Verdict::Accept {
                app: None,
                report: None,
            };
        }
        let cap = req.capability;
        let path_idx = match req.path_app {
            None => None,
            Some(id) => match self.by_id.get(id) {
                Some(&i) if self.apps[i].caps[cap.index()] => Some(i),
                // An unknown path app has no mode to fall back on: always reject.
                _ => {
                    return self.resolve(
                        SignatureError::UnknownApplication.into(),
                        SignatureMode::Enforce,
                        None,
                        head_only,
                    );
                }
            },
        };
        let route_mode = path_idx.map_or(self.route_mode[cap.index()], |i| self.apps[i].mode);
        if route_mode == SignatureMode::Off {
            return self.accept(path_idx, None);
        }
        let token = match req.authorization.map(jwt::bearer_token) {
            Some(Ok(t)) => t,
            Some(Err(e)) => return self.resolve(e.into(), route_mode, path_idx, head_only),
            None => {
                let missing = SignatureError::MissingToken.into();
                return self.resolve(missing, route_mode, path_idx, head_only);
            }
        };
        match self.check_token(token, req, path_idx, head_only) {
            Ok(v) if head_only => self.accept(v.app.or(path_idx), None),
            Ok(v) => {
                metrics::counter!("callhook_signature_verified_total").increment(1);
                if let Some(soft) = v.soft {
                    let app = v.app.or(path_idx).map(|i| &self.apps[i].id);
                    self.failures.record(soft, SignatureMode::Report, app);
                }
                self.accept(v.app.or(path_idx), v.soft)
            }
            Err(f) => self.resolve(f, route_mode, path_idx, head_only),
        }
    }

    /// Verifies a legacy SMS API webhook's `sig` parameter (doc §3) with the secret of the path
    /// application, or of any application with `legacy_sig` when the route has no app id.
    /// `params` are the decoded query (or form) parameters, `sig` included.
    ///
    /// `None` when no application that could have sent the request checks legacy
    /// signatures (`legacy_sig` set, signatures not off, the route's capability): the caller
    /// then verifies it like any other request, so a `sig` parameter alone never gets a
    /// request past enforcement. A signature that fails is judged by the mode in force on
    /// the route, as a missing token would be, so a report-mode legacy application cannot
    /// soften another application's enforcement either.
    pub fn verify_legacy(
        &self,
        capability: Capability,
        path_app: Option<&str>,
        params: &[(Cow<'_, str>, Cow<'_, str>)],
    ) -> Option<Verdict> {
        let cap = capability.index();
        // An unknown path application is `verify`'s to reject.
        let path_idx = match path_app {
            Some(id) => Some(*self.by_id.get(id)?),
            None => None,
        };
        let candidates = path_idx.map_or(0..self.apps.len(), |i| i..i + 1);
        let checking = candidates.filter_map(|i| {
            let app = &self.apps[i];
            let checks = app.caps[cap] && app.mode != SignatureMode::Off;
            Some((i, app.legacy.as_ref().filter(|_| checks)?))
        });
        let mut any = false;
        for (i, cfg) in checking {
            any = true;
            if verify_legacy_sig(params, cfg.algorithm, cfg.secret.expose()).is_ok() {
                metrics::counter!("callhook_signature_verified_total").increment(1);
                return Some(self.accept(Some(i), None));
            }
        }
        if !any {
            return None;
        }
        let mode = path_idx.map_or(self.route_mode[cap], |i| self.apps[i].mode);
        Some(self.resolve(SignatureError::BadLegacySig.into(), mode, path_idx, false))
    }

    /// True when no application is configured: every request is accepted unverified (local
    /// development), so callers may skip gathering what a check would need.
    pub fn is_open(&self) -> bool {
        self.apps.is_empty()
    }

    /// Number of `jti`s currently remembered (export as a gauge to size the cache).
    pub fn replay_cache_len(&self) -> usize {
        self.replay.entries()
    }

    fn accept(&self, app: Option<usize>, report: Option<SignatureError>) -> Verdict {
        Verdict::Accept {
            app: app.map(|i| self.apps[i].id.clone()),
            report,
        }
    }

    /// Applies the mode in force to a failure: the verified application's mode when the token
    /// got that far, else the route's. `head_only` (see `refuse_early`): a failure that is
    /// only reported is left for the full check to record.
    fn resolve(
        &self,
        f: Failure,
        route_mode: SignatureMode,
        path_idx: Option<usize>,
        head_only: bool,
    ) -> Verdict {
        let mode = f.app.map_or(route_mode, |i| self.apps[i].mode);
        let app = f.app.or(path_idx);
        match mode {
            SignatureMode::Off => self.accept(app, None),
            SignatureMode::Report => {
                if !head_only {
                    self.failures
                        .record(f.err, mode, app.map(|i| &self.apps[i].id));
                }
                self.accept(app, Some(f.err))
            }
            SignatureMode::Enforce => {
                self.failures
                    .record(f.err, mode, app.map(|i| &self.apps[i].id));
                match f.err {
                    SignatureError::MissingToken => Verdict::Unsigned,
                    err => Verdict::Reject(err),
                }
            }
        }
    }

    fn check_token(
        &self,
        token: &[u8],
        req: &SignedRequest<'_>,
        path_idx: Option<usize>,
        head_only: bool,
    ) -> Result<Verified, Failure> {
        let parts = jwt::split(token)?;
        jwt::check_header(parts.header)?;
        let sig = jwt::decode_signature(parts.signature)?;
        let (mut stack, mut heap) = ([0u8; 1024], Vec::new());
        let json = jwt::decode_payload(parts.payload, &mut stack, &mut heap)?;
        let claims = jwt::Claims::parse(json)?;
        let api_key = jwt::s(&claims.api_key).ok_or(SignatureError::UnknownApiKey)?;
        let key = self.keyring.verify(api_key, parts.signing_input, &sig)?;

        // Signature verified: the claims are Vonage's own from here on.
        let app = self.attribute(&claims, key, req.capability, path_idx)?;
        let fail = |err| Failure { err, app };
        if jwt::s(&claims.iss) != Some("Vonage") {
            return Err(fail(SignatureError::BadIssuer));
        }
        let iat = claims
            .iat
            .ok_or_else(|| fail(SignatureError::IatOutOfWindow))?
            .0;
        if iat.abs_diff(req.now_unix) > self.max_skew.unsigned_abs() {
            return Err(fail(SignatureError::IatOutOfWindow));
        }
        // exp/nbf presence is NC; when present, follow the SDKs' libraries (PyJWT, Node
        // jsonwebtoken, auth0): no leeway, expired once now >= exp, early while nbf > now.
        if claims.exp.is_some_and(|exp| req.now_unix >= exp.0) {
            return Err(fail(SignatureError::Expired));
        }
        if claims.nbf.is_some_and(|nbf| nbf.0 > req.now_unix) {
            return Err(fail(SignatureError::NotYetValid));
        }
        if head_only {
            return Ok(Verified { app, soft: None });
        }
        let claim =
            jwt::s(&claims.payload_hash).ok_or_else(|| fail(SignatureError::MissingPayloadHash))?;
        let claimed = payload_hash::claim_bytes(claim)
            .ok_or_else(|| fail(SignatureError::PayloadHashMismatch))?;
        let mut soft = None;
        // The hash of what this request carries, as the replay cache remembers it: a
        // retry of the same webhook carries the same payload, a token replayed over
        // another payload does not, even where a GET mismatch is only reported.
        let payload = match req.query {
            None => {
                let actual = payload_hash::post_body_hash(req.body);
                if !bool::from(actual.ct_eq(&claimed)) {
                    return Err(fail(SignatureError::PayloadHashMismatch));
                }
                claimed
            }
            // The hash takes a repeated key's last value (as a JSON object would), readers
            // its first: a query that reads two ways is refused whatever `get_hash` says.
            // Vonage does not repeat parameters.
            Some(query) if payload_hash::has_repeated_key(query) => {
                return Err(fail(SignatureError::PayloadHashMismatch));
            }
            Some(query) if !get_hash_matches(query, &claimed) => {
                // GET canonicalisation is NC (doc §2.2): soft unless the app enforces it. An
                // ambiguous attribution (app None) gets no leniency.
                match app.map(|i| self.apps[i].get_hash) {
                    Some(GetHashMode::Report) => soft = Some(SignatureError::PayloadHashMismatch),
                    _ => return Err(fail(SignatureError::PayloadHashMismatch)),
                }
                payload_hash::get_query_hash(query, JsonEscaping::Standard)
            }
            Some(_) => claimed,
        };
        // jti is documented as always present (WG); the SDKs do not check it, but without it
        // replay protection is impossible, so a token lacking it is malformed.
        let jti = jwt::s(&claims.jti)
            .filter(|j| !j.is_empty() && j.len() <= jwt::MAX_JTI_LEN)
            .ok_or_else(|| fail(SignatureError::MalformedToken("missing or oversized jti")))?;
        // Keep the jti exactly as long as a token with this iat can pass the window.
        let expires_at = iat.saturating_add(self.max_skew);
        match self
            .replay
            .check_and_insert(jti, &payload, expires_at, req.now_unix)
        {
            ReplayOutcome::Replayed => Err(fail(SignatureError::ReplayedJti)),
            ReplayOutcome::Fresh | ReplayOutcome::Retry => Ok(Verified { app, soft }),
        }
    }

    /// Attributes a verified token to an application: its `application_id` claim (which must be
    /// configured for the capability, match the path app, and own the secret that verified), or
    /// without the claim the path app, or the only application owning that secret with the
    /// capability (`None` when several do).
    fn attribute(
        &self,
        claims: &jwt::Claims<'_>,
        key: &Key,
        cap: Capability,
        path_idx: Option<usize>,
    ) -> Result<Option<usize>, Failure> {
        let has_cap = |i: usize| self.apps[i].caps[cap.index()];
        match jwt::s(&claims.application_id) {
            Some(id) => {
                let i = match self.by_id.get(id) {
                    Some(&i) if has_cap(i) => i,
                    _ => return Err(SignatureError::UnknownApplication.into()),
                };
                if path_idx.is_some_and(|p| p != i) || !key.owned_by(i) {
                    return Err(SignatureError::ApplicationMismatch.into());
                }
                Ok(Some(i))
            }
            None => match path_idx {
                Some(p) if key.owned_by(p) => Ok(Some(p)),
                Some(_) => Err(SignatureError::ApplicationMismatch.into()),
                None => {
                    let mut owners = key.owners().iter().copied().filter(|&i| has_cap(i));
                    match (owners.next(), owners.next()) {
                        (None, _) => Err(SignatureError::UnknownApplication.into()),
                        (Some(i), None) => Ok(Some(i)),
                        (Some(_), Some(_)) => Ok(None),
                    }
                }
            },
        }
    }
}

/// GET rule: the primary (serde_json-style) serialisation, then Python-style ASCII escaping
/// when the query has non-ASCII text (the two differ only then).
fn get_hash_matches(query: &str, claimed: &Hash256) -> bool {
    let primary = payload_hash::get_query_hash(query, JsonEscaping::Standard);
    if bool::from(primary.ct_eq(claimed)) {
        return true;
    }
    payload_hash::query_has_non_ascii(query) && {
        let ascii = payload_hash::get_query_hash(query, JsonEscaping::AsciiOnly);
        bool::from(ascii.ct_eq(claimed))
    }
}
