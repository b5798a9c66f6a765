use std::fmt;

use crate::ValidationError;

/// An email address, trimmed and lower-cased so that one person cannot
/// register twice as `A@x.jp` and `a@x.jp`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let normalised = raw.trim().to_lowercase();
        let invalid = |why: &str| Err(ValidationError::new("email", why.to_string()));
        if normalised.is_empty() {
            return invalid("must not be empty");
        }
        if normalised.len() > 254 {
            return invalid("must be at most 254 characters");
        }
        if normalised
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
        {
            return invalid("must not contain spaces");
        }
        let Some((local, domain)) = normalised.split_once('@') else {
            return invalid("must contain @");
        };
        if local.is_empty() || local.len() > 64 || domain.contains('@') {
            return invalid("is not a valid address");
        }
        let labels: Vec<&str> = domain.split('.').collect();
        if labels.len() < 2 || labels.iter().any(|l| l.is_empty()) {
            return invalid("domain is not valid");
        }
        Ok(Self(normalised))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Email").field(&self.0).finish()
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn normalises_case_and_whitespace() {
        let email = Email::parse("  Taro.Yamada@Example.JP ").unwrap();
        assert_eq!(email.as_str(), "taro.yamada@example.jp");
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            "",
            "no-at-sign",
            "@example.jp",
            "a@",
            "a@b",
            "a@@b.jp",
            "a b@c.jp",
            "a@b..jp",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    proptest! {
        #[test]
        fn parsing_is_idempotent(local in "[a-zA-Z0-9._+-]{1,20}", domain in "[a-z0-9-]{1,10}\\.[a-z]{2,4}") {
            let once = Email::parse(&format!("{local}@{domain}")).unwrap();
            let twice = Email::parse(once.as_str()).unwrap();
            prop_assert_eq!(once, twice);
        }
    }
}
