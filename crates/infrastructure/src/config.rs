//! Configuration from the environment, parsed once at start into typed
//! settings. A bad value stops the start with a message naming the variable.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

#[derive(Debug, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

fn invalid(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        message: message.into(),
    }
}

/// Where the data lives. Its `Debug` hides any password in the URL.
#[derive(Clone)]
pub enum DatabaseUrl {
    Sqlite(String),
    Postgres(SecretString),
}

impl DatabaseUrl {
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        let raw = raw.trim();
        if raw.starts_with("sqlite:") {
            let path = raw
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            if path.is_empty() {
                return Err(invalid("DATABASE_URL", "sqlite URL names no file"));
            }
            return Ok(Self::Sqlite(raw.to_string()));
        }
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            Url::parse(raw)
                .map_err(|e| invalid("DATABASE_URL", format!("not a valid URL: {e}")))?;
            return Ok(Self::Postgres(SecretString::from(raw.to_string())));
        }
        Err(invalid(
            "DATABASE_URL",
            "expected sqlite://PATH or postgres://USER@HOST/DB",
        ))
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(url) => f.debug_tuple("Sqlite").field(url).finish(),
            Self::Postgres(url) => {
                let shown = Url::parse(url.expose_secret())
                    .map(|mut u| {
                        if u.password().is_some() {
                            let _ = u.set_password(Some("***"));
                        }
                        u.to_string()
                    })
                    .unwrap_or_else(|_| "***".into());
                f.debug_tuple("Postgres").field(&shown).finish()
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub bind_addr: SocketAddr,
    pub database_url: DatabaseUrl,
    pub database_max_connections: u32,
    /// `None`: the built-in Stripe emulator is used.
    pub stripe_secret_key: Option<SecretString>,
    pub stripe_api_base: Url,
    pub stripe_webhook_secrets: Vec<SecretString>,
    /// Faults for the built-in emulator, as JSON (tests, demos of failure).
    pub stripe_emulator_faults: Option<String>,
    /// How far a webhook's signed timestamp may be from now, in seconds.
    pub stripe_webhook_tolerance_seconds: i64,
    /// `None`: a random key per start (tokens die with the process).
    pub auth_secret: Option<SecretString>,
    pub access_token_ttl: Duration,
    pub cookie_secure: bool,
    pub catalog_file: Option<PathBuf>,
    /// Added to every order, in the shop currency's minor unit.
    pub shipping_fee: i64,
    pub log_format: LogFormat,
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests).
    /// Unset and empty variables take their defaults.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());

        let bind_addr = match get("BIND_ADDR") {
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| invalid("BIND_ADDR", format!("`{v}` is not HOST:PORT")))?,
            None => SocketAddr::from(([127, 0, 0, 1], 8000)),
        };
        let database_url = DatabaseUrl::parse(
            &get("DATABASE_URL").unwrap_or_else(|| "sqlite://kessai.db".into()),
        )?;
        let database_max_connections = parse_number(
            "DATABASE_MAX_CONNECTIONS",
            get("DATABASE_MAX_CONNECTIONS"),
            10,
            1,
            1000,
        )? as u32;

        let stripe_secret_key = match get("STRIPE_SECRET_KEY") {
            Some(key) => {
                let key = key.trim().to_string();
                if !["sk_test_", "sk_live_", "rk_test_", "rk_live_"]
                    .iter()
                    .any(|p| key.starts_with(p))
                {
                    return Err(invalid(
                        "STRIPE_SECRET_KEY",
                        "expected a key starting with sk_test_, sk_live_, rk_test_ or rk_live_",
                    ));
                }
                Some(SecretString::from(key))
            }
            None => None,
        };
        let stripe_api_base = match get("STRIPE_API_BASE") {
            Some(v) => {
                let url = Url::parse(v.trim())
                    .map_err(|e| invalid("STRIPE_API_BASE", format!("not a valid URL: {e}")))?;
                if !matches!(url.scheme(), "http" | "https") {
                    return Err(invalid("STRIPE_API_BASE", "must be an http(s) URL"));
                }
                url
            }
            None => Url::parse("https://api.stripe.com")
                .map_err(|e| invalid("STRIPE_API_BASE", e.to_string()))?,
        };
        let stripe_webhook_secrets = get("STRIPE_WEBHOOK_SECRET")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| SecretString::from(s.to_string()))
                    .collect()
            })
            .unwrap_or_default();

        let stripe_webhook_tolerance_seconds = parse_number(
            "STRIPE_WEBHOOK_TOLERANCE_SECONDS",
            get("STRIPE_WEBHOOK_TOLERANCE_SECONDS"),
            300,
            1,
            24 * 3600,
        )?;
        let auth_secret = match get("AUTH_SECRET") {
            Some(v) if v.len() < 32 => {
                return Err(invalid("AUTH_SECRET", "must be at least 32 characters"))
            }
            Some(v) => Some(SecretString::from(v)),
            None => None,
        };
        let ttl_seconds = parse_number(
            "ACCESS_TOKEN_TTL_SECONDS",
            get("ACCESS_TOKEN_TTL_SECONDS"),
            24 * 3600,
            60,
            365 * 24 * 3600,
        )?;
        let cookie_secure = parse_bool("COOKIE_SECURE", get("COOKIE_SECURE"), false)?;
        let catalog_file = get("CATALOG_FILE").map(PathBuf::from);
        let shipping_fee = parse_number("SHIPPING_FEE", get("SHIPPING_FEE"), 0, 0, 1_000_000)?;
        let log_format = match get("LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(invalid(
                    "LOG_FORMAT",
                    format!("`{other}`: expected text or json"),
                ))
            }
        };

        Ok(Self {
            bind_addr,
            database_url,
            database_max_connections,
            stripe_secret_key,
            stripe_api_base,
            stripe_webhook_secrets,
            stripe_webhook_tolerance_seconds,
            stripe_emulator_faults: get("STRIPE_EMULATOR_FAULTS"),
            auth_secret,
            access_token_ttl: Duration::from_secs(ttl_seconds as u64),
            cookie_secure,
            catalog_file,
            shipping_fee,
            log_format,
        })
    }
}

fn parse_number(
    variable: &'static str,
    value: Option<String>,
    default: i64,
    min: i64,
    max: i64,
) -> Result<i64, ConfigError> {
    let Some(raw) = value else { return Ok(default) };
    match raw.trim().parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(
            variable,
            format!("`{raw}` is not a whole number from {min} to {max}"),
        )),
    }
}

fn parse_bool(
    variable: &'static str,
    value: Option<String>,
    default: bool,
) -> Result<bool, ConfigError> {
    match value.as_deref().map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if matches!(v.as_str(), "true" | "1" | "yes" | "on") => Ok(true),
        Some(v) if matches!(v.as_str(), "false" | "0" | "no" | "off") => Ok(false),
        Some(v) => Err(invalid(variable, format!("`{v}` is not true or false"))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_need_nothing_configured() {
        let s = settings(&[]).unwrap();
        assert_eq!(s.bind_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(s.database_url.backend(), "sqlite");
        assert!(s.stripe_secret_key.is_none());
        assert_eq!(s.stripe_api_base.as_str(), "https://api.stripe.com/");
        assert_eq!(s.access_token_ttl, Duration::from_secs(86400));
        assert!(!s.cookie_secure);
        assert_eq!(s.shipping_fee, 0);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("DATABASE_URL", "mysql://x"),
            ("DATABASE_URL", "postgres://[bad"),
            ("BIND_ADDR", "localhost"),
            ("STRIPE_SECRET_KEY", "pk_test_123"),
            ("STRIPE_API_BASE", "ftp://example.com"),
            ("AUTH_SECRET", "short"),
            ("COOKIE_SECURE", "maybe"),
            ("SHIPPING_FEE", "-5"),
            ("ACCESS_TOKEN_TTL_SECONDS", "abc"),
            ("LOG_FORMAT", "xml"),
        ] {
            let err = settings(&[(var, value)]).unwrap_err();
            assert_eq!(err.variable, var, "{var}={value}");
        }
    }

    #[test]
    fn webhook_secrets_split_on_commas_for_rotation() {
        let s = settings(&[("STRIPE_WEBHOOK_SECRET", "whsec_a, whsec_b,")]).unwrap();
        assert_eq!(s.stripe_webhook_secrets.len(), 2);
    }

    #[test]
    fn debug_output_hides_secrets() {
        let s = settings(&[
            ("DATABASE_URL", "postgres://kessai:hunter2@db/kessai"),
            ("STRIPE_SECRET_KEY", "sk_test_supersecret"),
            ("AUTH_SECRET", "0123456789abcdef0123456789abcdef-secret"),
        ])
        .unwrap();
        let shown = format!("{s:?}");
        for secret in ["hunter2", "supersecret", "abcdef-secret"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
    }
}
