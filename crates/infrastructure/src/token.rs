//! Signed access tokens bound to a session row.
//!
//! Format: `{session_id}.{expires_unix}.{signature}` where the signature is
//! HMAC-SHA256 over `{session_id}.{expires_unix}`, base64url without padding.
//! The signature lets us reject forged or expired tokens without touching
//! the database; the session row is what makes logout revoke a token.

use application::ports::{AccessToken, TokenIssuer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use domain::{Session, SessionId};
use hmac::{Hmac, Mac};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretSlice};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

pub struct HmacTokenIssuer {
    key: SecretSlice<u8>,
}

impl HmacTokenIssuer {
    pub fn new(key: SecretSlice<u8>) -> Self {
        Self { key }
    }

    /// A fresh random key, for when no `AUTH_SECRET` is configured.
    pub fn random_key() -> SecretSlice<u8> {
        let mut key = vec![0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut key);
        SecretSlice::from(key)
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail.
        match HmacSha256::new_from_slice(self.key.expose_secret()) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        }
    }
}

impl TokenIssuer for HmacTokenIssuer {
    fn new_session_id(&self) -> SessionId {
        let mut bytes = [0u8; 18];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        SessionId::new(URL_SAFE_NO_PAD.encode(bytes))
    }

    fn issue(&self, session: &Session) -> AccessToken {
        let payload = format!("{}.{}", session.id.as_str(), session.expires_at.timestamp());
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        AccessToken::new(format!("{payload}.{signature}"))
    }

    fn verify(&self, token: &str, now: DateTime<Utc>) -> Option<SessionId> {
        if token.len() > 256 {
            return None;
        }
        let (payload, signature) = token.rsplit_once('.')?;
        let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        // Constant-time comparison.
        mac.verify_slice(&signature).ok()?;
        let (session_id, expires) = payload.split_once('.')?;
        let expires: i64 = expires.parse().ok()?;
        (expires > now.timestamp()).then(|| SessionId::new(session_id))
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    fn session(issuer: &HmacTokenIssuer, expires_at: DateTime<Utc>) -> Session {
        Session {
            id: issuer.new_session_id(),
            user_id: domain::UserId::new(1),
            created_at: Utc::now(),
            expires_at,
        }
    }

    #[test]
    fn a_token_names_its_session_until_it_expires() {
        let issuer = HmacTokenIssuer::new(HmacTokenIssuer::random_key());
        let now = Utc::now();
        let s = session(&issuer, now + Duration::hours(1));
        let token = issuer.issue(&s);
        assert_eq!(issuer.verify(token.expose(), now), Some(s.id.clone()));
        assert_eq!(
            issuer.verify(token.expose(), now + Duration::hours(2)),
            None
        );
    }

    #[test]
    fn tampered_and_foreign_tokens_are_rejected() {
        let issuer = HmacTokenIssuer::new(HmacTokenIssuer::random_key());
        let other = HmacTokenIssuer::new(HmacTokenIssuer::random_key());
        let now = Utc::now();
        let s = session(&issuer, now + Duration::hours(1));
        let token = issuer.issue(&s).expose().to_string();
        assert_eq!(other.verify(&token, now), None);
        // Extending the expiry invalidates the signature.
        let (id, rest) = token.split_once('.').unwrap();
        let (_, sig) = rest.split_once('.').unwrap();
        let forged = format!("{id}.{}.{sig}", (now + Duration::days(365)).timestamp());
        assert_eq!(issuer.verify(&forged, now), None);
        for garbage in ["", "a", "a.b", "a.b.c", "...", &"x".repeat(300)] {
            assert_eq!(issuer.verify(garbage, now), None, "{garbage}");
        }
    }

    #[test]
    fn session_ids_are_unique_and_url_safe() {
        let issuer = HmacTokenIssuer::new(HmacTokenIssuer::random_key());
        let a = issuer.new_session_id();
        let b = issuer.new_session_id();
        assert_ne!(a, b);
        assert!(a
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }
}
