//! Money as an integer count of the currency's minor unit. Never a float.

use std::fmt;

use crate::ValidationError;

/// Currencies the shop can price in. JPY is zero-decimal: 16500 means ¥16,500.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Currency {
    Jpy,
    Usd,
    Eur,
}

impl Currency {
    /// ISO 4217 code in lower case, as Stripe spells it.
    pub const fn code(self) -> &'static str {
        match self {
            Self::Jpy => "jpy",
            Self::Usd => "usd",
            Self::Eur => "eur",
        }
    }

    /// Digits after the decimal point of the major unit (Stripe's "zero-decimal" list).
    pub const fn decimals(self) -> u32 {
        match self {
            Self::Jpy => 0,
            Self::Usd | Self::Eur => 2,
        }
    }

    pub fn parse(code: &str) -> Result<Self, ValidationError> {
        match code.trim().to_ascii_lowercase().as_str() {
            "jpy" => Ok(Self::Jpy),
            "usd" => Ok(Self::Usd),
            "eur" => Ok(Self::Eur),
            other => Err(ValidationError::new(
                "currency",
                format!("unsupported currency `{other}`"),
            )),
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount must not be negative")]
    Negative,
    #[error("amount exceeds the largest supported value")]
    Overflow,
    #[error("cannot combine {0} with {1}")]
    CurrencyMismatch(Currency, Currency),
}

/// A non-negative amount in minor units of one currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    /// Stripe accepts at most eight digits in the minor unit; we keep the
    /// same ceiling so a total that we accept is one Stripe can charge.
    pub const MAX_MINOR: i64 = 99_999_999;

    pub fn new(minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if minor < 0 {
            return Err(MoneyError::Negative);
        }
        if minor > Self::MAX_MINOR {
            return Err(MoneyError::Overflow);
        }
        Ok(Self { minor, currency })
    }

    pub const fn zero(currency: Currency) -> Self {
        Self { minor: 0, currency }
    }

    pub const fn minor_units(self) -> i64 {
        self.minor
    }

    pub const fn currency(self) -> Currency {
        self.currency
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let sum = self
            .minor
            .checked_add(other.minor)
            .ok_or(MoneyError::Overflow)?;
        Money::new(sum, self.currency)
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        Money::new(self.minor - other.minor, self.currency)
    }

    pub fn checked_mul(self, factor: u32) -> Result<Money, MoneyError> {
        let product = self
            .minor
            .checked_mul(i64::from(factor))
            .ok_or(MoneyError::Overflow)?;
        Money::new(product, self.currency)
    }

    /// `percent`% of this amount, rounded down to the minor unit (the tax rule).
    pub fn percent_floor(self, percent: u32) -> Money {
        // i128 cannot overflow here: MAX_MINOR * u32::MAX < i128::MAX.
        let scaled = i128::from(self.minor) * i128::from(percent) / 100;
        Money {
            minor: i64::try_from(scaled).unwrap_or(i64::MAX),
            currency: self.currency,
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.minor, self.currency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn yen(v: i64) -> Money {
        Money::new(v, Currency::Jpy).unwrap()
    }

    #[test]
    fn rejects_negative_and_too_large_amounts() {
        assert_eq!(Money::new(-1, Currency::Jpy), Err(MoneyError::Negative));
        assert_eq!(
            Money::new(Money::MAX_MINOR + 1, Currency::Jpy),
            Err(MoneyError::Overflow)
        );
        assert_eq!(yen(0).minor_units(), 0);
    }

    #[test]
    fn refuses_to_mix_currencies() {
        let usd = Money::new(100, Currency::Usd).unwrap();
        assert_eq!(
            yen(1).checked_add(usd),
            Err(MoneyError::CurrencyMismatch(Currency::Jpy, Currency::Usd))
        );
    }

    #[test]
    fn tax_rounds_down() {
        assert_eq!(yen(15000).percent_floor(10), yen(1500));
        assert_eq!(yen(1999).percent_floor(10), yen(199));
        assert_eq!(yen(9).percent_floor(10), yen(0));
    }

    #[test]
    fn parses_currency_codes_case_insensitively() {
        assert_eq!(Currency::parse("JPY"), Ok(Currency::Jpy));
        assert_eq!(Currency::Jpy.decimals(), 0);
        assert!(Currency::parse("xxx").is_err());
    }

    proptest! {
        #[test]
        fn addition_is_exact_or_refused(a in 0..=Money::MAX_MINOR, b in 0..=Money::MAX_MINOR) {
            match yen(a).checked_add(yen(b)) {
                Ok(sum) => prop_assert_eq!(sum.minor_units(), a + b),
                Err(e) => {
                    prop_assert_eq!(e, MoneyError::Overflow);
                    prop_assert!(a + b > Money::MAX_MINOR);
                }
            }
        }

        #[test]
        fn multiplication_is_exact_or_refused(a in 0..=Money::MAX_MINOR, q in 0u32..100_000) {
            match yen(a).checked_mul(q) {
                Ok(p) => prop_assert_eq!(i128::from(p.minor_units()), i128::from(a) * i128::from(q)),
                Err(_) => prop_assert!(i128::from(a) * i128::from(q) > i128::from(Money::MAX_MINOR)),
            }
        }

        #[test]
        fn percent_floor_never_exceeds_the_exact_share(a in 0..=Money::MAX_MINOR, p in 0u32..=100) {
            let share = yen(a).percent_floor(p).minor_units();
            prop_assert!(i128::from(share) * 100 <= i128::from(a) * i128::from(p));
            prop_assert!((i128::from(share) + 1) * 100 > i128::from(a) * i128::from(p));
        }
    }
}
