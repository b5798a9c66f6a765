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
    /// How often the reconciliation worker runs; `None`: it does not.
    pub reconcile_interval: Option<Duration>,
    /// How long an order awaiting payment must be quiet before it is checked.
    pub reconcile_after: Duration,
    /// Faults for the built-in emulator, as JSON (tests, demos of failure).
    pub stripe_emulator_faults: Option<String>,
    /// How far a webhook's signed timestamp may be from now, in seconds.
    pub stripe_webhook_tolerance_seconds: i64,
    /// `None`: a random key per start (tokens die with the process).
    pub auth_secret: Option<SecretString>,
    pub access_token_ttl: Duration,
    pub cookie_secure: bool,
    /// Browser origins (`scheme://host[:port]`, normalised) allowed to send
    /// cookie-authenticated requests and to use CORS with credentials.
    /// Empty: same-origin only, and no CORS.
    pub allowed_origins: Vec<String>,
    /// Take the client address from `X-Forwarded-For` (and the request's
    /// scheme and host from `X-Forwarded-Proto` / `X-Forwarded-Host`).
    /// Only behind a proxy that sets them.
    pub trust_proxy_headers: bool,
    /// Attempts per minute at `POST /api/auth/login` and `/register`, per
    /// client address (0: no limit).
    pub auth_rate_limit_per_address: u32,
    /// Attempts per minute at the same endpoints, per email (0: no limit).
    pub auth_rate_limit_per_email: u32,
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
        if stripe_secret_key
            .as_ref()
            .is_some_and(|key| is_live_key(key.expose_secret()))
        {
            let missing: Vec<&str> = [
                (!cookie_secure).then_some("COOKIE_SECURE=true"),
                auth_secret.is_none().then_some("AUTH_SECRET"),
            ]
            .into_iter()
            .flatten()
            .collect();
            if !missing.is_empty() {
                return Err(invalid(
                    "STRIPE_SECRET_KEY",
                    format!(
                        "a live key (sk_live_/rk_live_) takes real payments and needs \
                         COOKIE_SECURE=true and AUTH_SECRET; missing: {}",
                        missing.join(", ")
                    ),
                ));
            }
        }
        let allowed_origins = match get("ALLOWED_ORIGINS") {
            Some(v) => v
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(parse_origin)
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let trust_proxy_headers =
            parse_bool("TRUST_PROXY_HEADERS", get("TRUST_PROXY_HEADERS"), false)?;
        let auth_rate_limit_per_address = parse_number(
            "AUTH_RATE_LIMIT_PER_ADDRESS",
            get("AUTH_RATE_LIMIT_PER_ADDRESS"),
            10,
            0,
            1_000_000,
        )? as u32;
        let auth_rate_limit_per_email = parse_number(
            "AUTH_RATE_LIMIT_PER_EMAIL",
            get("AUTH_RATE_LIMIT_PER_EMAIL"),
            5,
            0,
            1_000_000,
        )? as u32;
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
            reconcile_interval: match parse_number(
                "RECONCILE_INTERVAL_SECONDS",
                get("RECONCILE_INTERVAL_SECONDS"),
                30,
                0,
                86_400,
            )? {
                0 => None,
                n => Some(Duration::from_secs(n as u64)),
            },
            reconcile_after: Duration::from_secs(parse_number(
                "RECONCILE_AFTER_SECONDS",
                get("RECONCILE_AFTER_SECONDS"),
                120,
                0,
                30 * 86_400,
            )? as u64),
            auth_secret,
            access_token_ttl: Duration::from_secs(ttl_seconds as u64),
            cookie_secure,
            allowed_origins,
            trust_proxy_headers,
            auth_rate_limit_per_address,
            auth_rate_limit_per_email,
            catalog_file,
            shipping_fee,
            log_format,
        })
    }
}

/// `sk_live_…` and `rk_live_…` take real money.
fn is_live_key(key: &str) -> bool {
    key.starts_with("sk_live_") || key.starts_with("rk_live_")
}

/// One `ALLOWED_ORIGINS` entry: an http(s) origin with no path, query or
/// credentials, in the form browsers send in `Origin`
/// (`https://shop.example`, default port omitted, host lower-case).
fn parse_origin(raw: &str) -> Result<String, ConfigError> {
    let bad = |why: &str| invalid("ALLOWED_ORIGINS", format!("`{raw}`: {why}"));
    if raw == "*" || raw == "null" {
        return Err(bad(
            "list each origin (credentials are never allowed for any origin)",
        ));
    }
    let url = Url::parse(raw).map_err(|e| bad(&format!("not a URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("expected http:// or https://"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    if !url.username().is_empty()
        || url.password().is_some()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(bad("expected scheme://host[:port] and nothing else"));
    }
    Ok(url.origin().ascii_serialization())
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
            ("ALLOWED_ORIGINS", "*"),
            ("ALLOWED_ORIGINS", "shop.example"),
            ("ALLOWED_ORIGINS", "https://shop.example/app"),
            ("ALLOWED_ORIGINS", "ftp://shop.example"),
            (
                "ALLOWED_ORIGINS",
                "https://a.example,https://user@b.example",
            ),
            ("TRUST_PROXY_HEADERS", "sometimes"),
            ("AUTH_RATE_LIMIT_PER_ADDRESS", "-1"),
            ("AUTH_RATE_LIMIT_PER_EMAIL", "many"),
        ] {
            let err = settings(&[(var, value)]).unwrap_err();
            assert_eq!(err.variable, var, "{var}={value}");
        }
    }

    #[test]
    fn abuse_limits_have_defaults_and_zero_turns_them_off() {
        let s = settings(&[]).unwrap();
        assert_eq!(
            (s.auth_rate_limit_per_address, s.auth_rate_limit_per_email),
            (10, 5)
        );
        assert!(s.allowed_origins.is_empty());
        assert!(!s.trust_proxy_headers);
        let s = settings(&[
            ("AUTH_RATE_LIMIT_PER_ADDRESS", "0"),
            ("AUTH_RATE_LIMIT_PER_EMAIL", "0"),
        ])
        .unwrap();
        assert_eq!(
            (s.auth_rate_limit_per_address, s.auth_rate_limit_per_email),
            (0, 0)
        );
    }

    #[test]
    fn allowed_origins_are_normalised_as_browsers_send_them() {
        let s = settings(&[(
            "ALLOWED_ORIGINS",
            "https://Shop.Example, https://shop.example:443/ ,http://localhost:5173,",
        )])
        .unwrap();
        assert_eq!(
            s.allowed_origins,
            [
                "https://shop.example",
                "https://shop.example",
                "http://localhost:5173"
            ]
        );
    }

    #[test]
    fn a_live_key_needs_secure_cookies_and_a_fixed_auth_secret() {
        const SECRET: &str = "0123456789abcdef0123456789abcdef";
        for key in ["sk_live_abc", "rk_live_abc"] {
            for (vars, missing) in [
                (vec![], vec!["COOKIE_SECURE", "AUTH_SECRET"]),
                (vec![("COOKIE_SECURE", "true")], vec!["AUTH_SECRET"]),
                (vec![("AUTH_SECRET", SECRET)], vec!["COOKIE_SECURE"]),
            ] {
                let mut vars = vars;
                vars.push(("STRIPE_SECRET_KEY", key));
                let err = settings(&vars).unwrap_err();
                assert_eq!(err.variable, "STRIPE_SECRET_KEY");
                let shown = err.to_string();
                for name in missing {
                    assert!(shown.contains(name), "{shown}");
                }
                assert!(!shown.contains("abc"), "the key leaked: {shown}");
            }
            let ok = settings(&[
                ("STRIPE_SECRET_KEY", key),
                ("COOKIE_SECURE", "true"),
                ("AUTH_SECRET", SECRET),
            ]);
            assert!(ok.is_ok(), "{key}");
        }
        assert!(settings(&[("STRIPE_SECRET_KEY", "sk_test_abc")]).is_ok());
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
