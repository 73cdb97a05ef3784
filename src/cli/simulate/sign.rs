//! Vonage-style request signing (HS256 JWT with payload_hash).

use super::*;

/// Signs like Vonage (§2.1): HS256 over `header.claims`, base64url without padding.
pub(super) struct Signer {
    pub(super) key: Hmac<Sha256>,
    pub(super) api_key: String,
    pub(super) application_id: Option<String>,
}

impl Signer {
    pub(super) fn new(
        secret: &str,
        api_key: &str,
        application_id: Option<String>,
    ) -> Result<Self, String> {
        if secret.is_empty() {
            return Err("the signature secret is empty".into());
        }
        let key =
            <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).map_err(|e| e.to_string())?;
        Ok(Self {
            key,
            api_key: api_key.to_owned(),
            application_id,
        })
    }

    pub(super) fn token(&self, payload: &[u8], jti: &str) -> String {
        let hash: String =
            Sha256::digest(payload)
                .iter()
                .fold(String::with_capacity(64), |mut s, b| {
                    let _ = write!(s, "{b:02x}");
                    s
                });
        let iat = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut claims = Map::new();
        claims.insert("iat".into(), Value::from(iat));
        claims.insert("jti".into(), Value::from(jti));
        claims.insert("iss".into(), Value::from("Vonage"));
        claims.insert("payload_hash".into(), Value::from(hash));
        claims.insert("api_key".into(), Value::from(self.api_key.as_str()));
        if let Some(app) = &self.application_id {
            claims.insert("application_id".into(), Value::from(app.as_str()));
        }
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = B64.encode(Value::Object(claims).to_string());
        let input = format!("{header}.{body}");
        let mut mac = self.key.clone();
        mac.update(input.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{input}.{sig}")
    }
}
