//! Signature secrets by `api_key`, keyed once at startup.
//!
//! Each secret is turned into an `Hmac<Sha256>` whose inner/outer pad blocks are already
//! absorbed; a request clones it (a ~200-byte copy) instead of re-running the key schedule.
//! Several applications may share an `api_key` (one account, many apps), so secrets are merged
//! per key and each remembers which applications listed it: a token only counts for an
//! application whose own configuration holds the secret that verified it.

use std::collections::HashMap;
use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::SignatureError;
use super::config::{ApplicationConfig, VerifyConfigError};

/// One secret, pre-keyed.
#[derive(Clone)]
pub struct Key {
    mac: Hmac<Sha256>,
    /// Indices (into the application list) of applications configured with this secret.
    owners: Vec<usize>,
}

impl Key {
    /// Whether application `app` (by index) lists this secret.
    pub fn owned_by(&self, app: usize) -> bool {
        self.owners.contains(&app)
    }

    /// Applications configured with this secret.
    pub fn owners(&self) -> &[usize] {
        &self.owners
    }
}

/// All signature secrets, grouped by `api_key`.
#[derive(Clone, Default)]
pub struct Keyring {
    by_api_key: HashMap<Box<str>, Vec<Key>>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets; api keys and counts are enough to debug configuration.
        let mut m = f.debug_map();
        for (k, v) in &self.by_api_key {
            m.entry(k, &v.len());
        }
        m.finish()
    }
}

impl Keyring {
    /// Keys every application's secrets. Fails only on a secret HMAC cannot take, which cannot
    /// happen (HMAC accepts any key length) but is reported with its path rather than unwrapped.
    pub fn build(apps: &[ApplicationConfig]) -> Result<Self, VerifyConfigError> {
        let mut by_api_key: HashMap<Box<str>, Vec<Key>> = HashMap::new();
        // (api_key, secret) -> position in that api_key's list; borrowed, dropped after setup.
        let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
        for (i, app) in apps.iter().enumerate() {
            let Some(api_key) = app.api_key.as_deref() else {
                continue;
            };
            for (j, secret) in app.signature_secrets.iter().enumerate() {
                let keys = by_api_key.entry(api_key.into()).or_default();
                if let Some(&pos) = seen.get(&(api_key, secret.expose())) {
                    if let Some(key) = keys.get_mut(pos) {
                        key.owners.push(i);
                    }
                    continue;
                }
                let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose().as_bytes())
                    .map_err(|_| VerifyConfigError {
                        path: format!("applications[{i}].signature_secrets[{j}]"),
                        problem: "secret not usable as an HMAC key",
                    })?;
                seen.insert((api_key, secret.expose()), keys.len());
                keys.push(Key {
                    mac,
                    owners: vec![i],
                });
            }
        }
        Ok(Self { by_api_key })
    }

    /// Checks `signature` over `signing_input` with each secret of `api_key` (constant-time
    /// comparison per secret) and returns the secret that matched.
    pub fn verify(
        &self,
        api_key: &str,
        signing_input: &[u8],
        signature: &[u8; 32],
    ) -> Result<&Key, SignatureError> {
        let keys = self
            .by_api_key
            .get(api_key)
            .ok_or(SignatureError::UnknownApiKey)?;
        for key in keys {
            let mut mac = key.mac.clone();
            mac.update(signing_input);
            if mac.verify_slice(signature).is_ok() {
                return Ok(key);
            }
        }
        Err(SignatureError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::config::{AppId, Capability, GetHashMode, Secret};

    fn app(id: &str, api_key: &str, secrets: &[&str]) -> ApplicationConfig {
        ApplicationConfig {
            id: AppId::new(id),
            name: id.into(),
            api_key: Some(api_key.into()),
            signature_secrets: secrets.iter().map(|s| Secret::new(*s)).collect(),
            capabilities: vec![Capability::Voice],
            signatures: None,
            get_hash: GetHashMode::Report,
            legacy_sig: None,
        }
    }

    fn mac(secret: &str, input: &[u8]) -> [u8; 32] {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
        m.update(input);
        m.finalize().into_bytes().into()
    }

    #[test]
    fn shared_api_key_merges_and_tracks_owners() {
        let apps = [
            app("a", "k1", &["s1", "s2"]),
            app("b", "k1", &["s2"]),
            app("c", "k2", &["s3"]),
        ];
        let ring = Keyring::build(&apps).unwrap();
        assert_eq!(ring.by_api_key.len(), 2);
        let k = ring.verify("k1", b"x.y", &mac("s1", b"x.y")).unwrap();
        assert_eq!(k.owners(), &[0]);
        let k = ring.verify("k1", b"x.y", &mac("s2", b"x.y")).unwrap();
        assert!(k.owned_by(0) && k.owned_by(1) && !k.owned_by(2));
        assert!(matches!(
            ring.verify("k1", b"x.y", &mac("s3", b"x.y")),
            Err(SignatureError::BadSignature)
        ));
        assert!(matches!(
            ring.verify("k9", b"x.y", &mac("s3", b"x.y")),
            Err(SignatureError::UnknownApiKey)
        ));
        assert!(!format!("{ring:?}").contains("s1"));
    }
}
