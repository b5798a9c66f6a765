//! Currencies as Stripe treats them: lower-case ISO codes, amounts as
//! integers in the smallest unit (zero-decimal currencies such as JPY have
//! none), Stripe's minimum charge amounts, and at most 99,999,999 units.

use crate::error::ApiError;

/// The currencies Stripe accepts for payments.
const SUPPORTED: &[&str] = &[
    "aed", "afn", "all", "amd", "ang", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd", "bdt",
    "bgn", "bhd", "bif", "bmd", "bnd", "bob", "brl", "bsd", "bwp", "byn", "bzd", "cad", "cdf",
    "chf", "clp", "cny", "cop", "crc", "cve", "czk", "djf", "dkk", "dop", "dzd", "egp", "etb",
    "eur", "fjd", "fkp", "gbp", "gel", "gip", "gmd", "gnf", "gtq", "gyd", "hkd", "hnl", "htg",
    "huf", "idr", "ils", "inr", "isk", "jmd", "jod", "jpy", "kes", "kgs", "khr", "kmf", "krw",
    "kwd", "kyd", "kzt", "lak", "lbp", "lkr", "lrd", "lsl", "mad", "mdl", "mga", "mkd", "mmk",
    "mnt", "mop", "mur", "mvr", "mwk", "mxn", "myr", "mzn", "nad", "ngn", "nio", "nok", "npr",
    "nzd", "omr", "pab", "pen", "pgk", "php", "pkr", "pln", "pyg", "qar", "ron", "rsd", "rub",
    "rwf", "sar", "sbd", "scr", "sek", "sgd", "shp", "sle", "sos", "srd", "std", "szl", "thb",
    "tjs", "tnd", "top", "try", "ttd", "twd", "tzs", "uah", "ugx", "usd", "uyu", "uzs", "vnd",
    "vuv", "wst", "xaf", "xcd", "xof", "xpf", "yer", "zar", "zmw",
];

const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];

const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];

/// Stripe's published minimum charge amounts, in the smallest unit. Other
/// currencies have a minimum equivalent to $0.50 at the day's rate, which
/// the emulator cannot know: for them only `amount >= 1` is checked.
const MINIMUMS: &[(&str, i64)] = &[
    ("usd", 50),
    ("aed", 200),
    ("aud", 50),
    ("bgn", 100),
    ("brl", 50),
    ("cad", 50),
    ("chf", 50),
    ("czk", 1500),
    ("dkk", 250),
    ("eur", 50),
    ("gbp", 30),
    ("hkd", 400),
    ("huf", 17500),
    ("inr", 50),
    ("jpy", 50),
    ("mxn", 1000),
    ("myr", 200),
    ("nok", 300),
    ("nzd", 50),
    ("pln", 200),
    ("ron", 200),
    ("sek", 300),
    ("sgd", 50),
    ("thb", 1000),
];

pub(crate) const MAX_AMOUNT: i64 = 99_999_999;

/// Lower-cases and checks a currency code.
pub(crate) fn parse_currency(raw: &str) -> Result<String, ApiError> {
    let code = raw.trim().to_ascii_lowercase();
    if SUPPORTED.contains(&code.as_str()) {
        Ok(code)
    } else {
        Err(ApiError::validation(format!(
            "Invalid currency: {}. Stripe currently supports these currencies: {}",
            raw.chars().take(16).collect::<String>(),
            SUPPORTED.join(", ")
        ))
        .param("currency"))
    }
}

pub(crate) fn decimals(currency: &str) -> u32 {
    if ZERO_DECIMAL.contains(&currency) {
        0
    } else if THREE_DECIMAL.contains(&currency) {
        3
    } else {
        2
    }
}

pub(crate) fn minimum(currency: &str) -> i64 {
    MINIMUMS
        .iter()
        .find(|(code, _)| *code == currency)
        .map_or(1, |(_, min)| *min)
}

/// Checks a charge amount for `currency` (already parsed, ≥ 1).
pub(crate) fn check_amount(amount: i64, currency: &str) -> Result<(), ApiError> {
    let min = minimum(currency);
    if amount < min {
        return Err(ApiError::validation(format!(
            "Amount must be at least {} {currency}",
            format_amount(min, currency)
        ))
        .code("amount_too_small")
        .param("amount"));
    }
    if amount > MAX_AMOUNT {
        return Err(ApiError::validation(format!(
            "Amount must be no more than {}",
            format_amount(MAX_AMOUNT, currency)
        ))
        .code("amount_too_large")
        .param("amount"));
    }
    if decimals(currency) == 3 && amount % 10 != 0 {
        return Err(ApiError::validation(format!(
            "The amount for {currency} must be a multiple of 10 (the last digit is not used)."
        ))
        .code("invalid_amount")
        .param("amount"));
    }
    Ok(())
}

fn symbol(currency: &str) -> &'static str {
    match currency {
        "usd" | "aud" | "cad" | "nzd" | "sgd" | "hkd" | "mxn" => "$",
        "eur" => "€",
        "gbp" => "£",
        "jpy" | "cny" => "¥",
        "krw" => "₩",
        "inr" => "₹",
        _ => "",
    }
}

fn group_thousands(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `¥16,500`, `$0.50`, `12.345` (no symbol known): for messages and pages.
pub(crate) fn format_amount(amount: i64, currency: &str) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    let places = decimals(currency);
    let unit = 10u64.pow(places);
    let whole = group_thousands(&(abs / unit).to_string());
    let text = if places == 0 {
        whole
    } else {
        format!(
            "{whole}.{:0width$}",
            abs % unit,
            width = usize::try_from(places).unwrap_or(2)
        )
    };
    format!("{sign}{}{text}", symbol(currency))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_stripe_messages() {
        assert_eq!(format_amount(16500, "jpy"), "¥16,500");
        assert_eq!(format_amount(50, "usd"), "$0.50");
        assert_eq!(format_amount(99_999_999, "usd"), "$999,999.99");
        assert_eq!(format_amount(1234, "kwd"), "1.234");
        assert_eq!(format_amount(100, "eur"), "€1.00");
    }

    #[test]
    fn minimums_and_maximum() {
        assert!(check_amount(49, "jpy").is_err());
        assert!(check_amount(50, "jpy").is_ok());
        assert!(check_amount(49, "usd").is_err());
        assert!(check_amount(100_000_000, "jpy").is_err());
        assert!(check_amount(1, "krw").is_ok());
        assert!(check_amount(1005, "kwd").is_err());
        assert_eq!(parse_currency("JPY").ok().as_deref(), Some("jpy"));
        assert!(parse_currency("nonsense").is_err());
    }
}
