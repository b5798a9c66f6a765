use std::fmt;

use chrono::{Datelike, NaiveDate};

use crate::ValidationError;

const PREFIX: &str = "ACQ";

/// `ACQ-YYMMDD-NNN`: the shop's human-facing order number. `NNN` is the
/// order's sequence within its day, at least three digits wide.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OrderNumber(String);

impl OrderNumber {
    pub fn new(day: NaiveDate, sequence: u32) -> Result<Self, ValidationError> {
        if sequence == 0 {
            return Err(ValidationError::new("order_number", "sequence starts at 1"));
        }
        Ok(Self(format!(
            "{PREFIX}-{:02}{:02}{:02}-{sequence:03}",
            day.year().rem_euclid(100),
            day.month(),
            day.day()
        )))
    }

    pub fn parse(raw: &str) -> Result<Self, ValidationError> {
        let invalid = || ValidationError::new("order_number", "expected ACQ-YYMMDD-NNN");
        let mut parts = raw.split('-');
        let (Some(PREFIX), Some(date), Some(seq), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid());
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if date.len() != 6 || !digits(date) || seq.len() < 3 || seq.len() > 9 || !digits(seq) {
            return Err(invalid());
        }
        if NaiveDate::parse_from_str(&format!("20{date}"), "%Y%m%d").is_err() {
            return Err(invalid());
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OrderNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_date_and_three_digit_sequence() {
        let day = NaiveDate::from_ymd_opt(2024, 11, 24).unwrap();
        assert_eq!(OrderNumber::new(day, 1).unwrap().as_str(), "ACQ-241124-001");
        assert_eq!(
            OrderNumber::new(day, 1234).unwrap().as_str(),
            "ACQ-241124-1234"
        );
        assert!(OrderNumber::new(day, 0).is_err());
    }

    #[test]
    fn parse_rejects_other_shapes() {
        for bad in [
            "",
            "ACQ-241124-01",
            "XYZ-241124-001",
            "ACQ-241324-001",
            "ACQ-241124-001-1",
            "ACQ-24112a-001",
        ] {
            assert!(OrderNumber::parse(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn every_generated_number_parses(days in 0i64..36500, seq in 1u32..100_000) {
            let day = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap() + chrono::Days::new(days as u64);
            let number = OrderNumber::new(day, seq).unwrap();
            prop_assert_eq!(OrderNumber::parse(number.as_str()).unwrap(), number);
        }
    }
}
