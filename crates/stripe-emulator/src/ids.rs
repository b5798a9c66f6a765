//! Ids and secrets in Stripe's formats: a prefix and random alphanumerics
//! (`pi_3PgafyB7WZ01zgkW1a2b3c4d`, `pi_…_secret_…`, `cus_QXg1o8vcGmoR32`).

use rand::distributions::Alphanumeric;
use rand::Rng;

pub(crate) fn random_alphanumeric(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// An object id: `prefix_` and 24 alphanumerics (customers: 14, as Stripe).
pub(crate) fn object_id(prefix: &str) -> String {
    let len = if prefix == "cus" { 14 } else { 24 };
    format!("{prefix}_{}", random_alphanumeric(len))
}

pub(crate) fn client_secret(intent_id: &str) -> String {
    format!("{intent_id}_secret_{}", random_alphanumeric(25))
}

pub(crate) fn request_id() -> String {
    format!("req_{}", random_alphanumeric(14))
}

/// Stripe's `invoice_prefix`: eight upper-case hex digits.
pub(crate) fn invoice_prefix() -> String {
    let n: u32 = rand::thread_rng().gen();
    format!("{n:08X}")
}

pub(crate) fn fingerprint() -> String {
    random_alphanumeric(16)
}

/// The intent id a client secret belongs to (`pi_x_secret_y` → `pi_x`).
pub(crate) fn intent_of_client_secret(secret: &str) -> Option<&str> {
    let (id, rest) = secret.split_once("_secret_")?;
    (id.starts_with("pi_") && !rest.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let id = object_id("pi");
        assert!(id.starts_with("pi_") && id.len() == 27);
        assert!(id[3..].chars().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(object_id("cus").len(), 18);
        let secret = client_secret(&id);
        assert_eq!(intent_of_client_secret(&secret), Some(id.as_str()));
        assert_eq!(intent_of_client_secret("cus_1_secret_x"), None);
        assert_eq!(intent_of_client_secret("pi_1_secret_"), None);
        assert!(request_id().starts_with("req_"));
        assert_eq!(invoice_prefix().len(), 8);
    }
}
