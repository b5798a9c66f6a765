use std::fmt;

use chrono::{DateTime, Utc};

use crate::{Email, SessionId, UserId, ValidationError};

/// A password as typed, before hashing. Its `Debug` never shows it.
#[derive(Clone)]
pub struct PlainPassword(String);

impl PlainPassword {
    pub const MIN_CHARS: usize = 8;
    /// Long enough for any passphrase, short enough that hashing it is cheap.
    pub const MAX_CHARS: usize = 128;

    pub fn parse(raw: String) -> Result<Self, ValidationError> {
        let chars = raw.chars().count();
        if chars < Self::MIN_CHARS {
            return Err(ValidationError::new(
                "password",
                format!("must be at least {} characters", Self::MIN_CHARS),
            ));
        }
        if chars > Self::MAX_CHARS {
            return Err(ValidationError::new(
                "password",
                format!("must be at most {} characters", Self::MAX_CHARS),
            ));
        }
        Ok(Self(raw))
    }

    /// Used at login, where any length may be typed; the hash check decides.
    pub fn unchecked(raw: String) -> Self {
        Self(raw)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PlainPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PlainPassword(***)")
    }
}

/// A stored password hash in PHC string format (`$argon2id$v=19$…`).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn new(phc: String) -> Self {
        Self(phc)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(***)")
    }
}

/// The name a user chose to show; optional, at most 100 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    pub fn parse(raw: Option<String>) -> Result<Option<Self>, ValidationError> {
        let Some(raw) = raw else { return Ok(None) };
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Ok(None);
        }
        if trimmed.chars().count() > 100 || trimmed.chars().any(char::is_control) {
            return Err(ValidationError::new(
                "name",
                "at most 100 characters, no control characters",
            ));
        }
        Ok(Some(Self(trimmed.to_string())))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: Email,
    pub name: Option<DisplayName>,
    pub password_hash: PasswordHash,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub email: Email,
    pub name: Option<DisplayName>,
    pub password_hash: PasswordHash,
    pub stripe_customer_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A login. An access token names one session; logging out revokes it.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: SessionId,
    pub user_id: UserId,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_length_is_counted_in_characters() {
        assert!(PlainPassword::parse("1234567".into()).is_err());
        assert!(PlainPassword::parse("パスワード1234".into()).is_ok());
        assert!(PlainPassword::parse("x".repeat(129)).is_err());
    }

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let p = PlainPassword::parse("hunter2hunter2".into()).unwrap();
        assert!(!format!("{p:?}").contains("hunter2"));
        let h = PasswordHash::new("$argon2id$secret".into());
        assert!(!format!("{h:?}").contains("secret"));
    }

    #[test]
    fn blank_names_become_none() {
        assert_eq!(DisplayName::parse(Some("  ".into())).unwrap(), None);
        assert_eq!(
            DisplayName::parse(Some(" 太郎 ".into()))
                .unwrap()
                .unwrap()
                .as_str(),
            "太郎"
        );
        assert!(DisplayName::parse(Some("a\u{7}".into())).is_err());
    }
}
