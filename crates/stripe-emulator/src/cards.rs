//! Stripe's test PaymentMethods (`pm_card_visa`, …) and what charging each
//! one does. Using one creates a new stored `pm_…` object, as Stripe does.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Behavior {
    Succeed,
    /// 402 `card_error`: `code`, `decline_code`, `message`.
    Decline {
        code: &'static str,
        decline_code: Option<&'static str>,
        message: &'static str,
    },
    /// Emulator-specific: the payment goes to `processing` and settles later.
    Delayed,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct TestCard {
    pub names: &'static [&'static str],
    pub number: &'static str,
    pub brand: &'static str,
    pub funding: &'static str,
    pub country: &'static str,
    pub behavior: Behavior,
}

impl TestCard {
    pub fn last4(&self) -> &'static str {
        let start = self.number.len().saturating_sub(4);
        self.number.get(start..).unwrap_or(self.number)
    }
}

const GENERIC: &str = "Your card was declined.";

/// The delayed method's name: no such card exists at Stripe; it stands for
/// a payment that settles later (as konbini or a bank debit do).
pub const DELAYED: &str = "pm_card_delayed";

pub(crate) const TEST_CARDS: &[TestCard] = &[
    TestCard {
        names: &["pm_card_visa"],
        number: "4242424242424242",
        brand: "visa",
        funding: "credit",
        country: "US",
        behavior: Behavior::Succeed,
    },
    TestCard {
        names: &["pm_card_visa_debit"],
        number: "4000056655665556",
        brand: "visa",
        funding: "debit",
        country: "US",
        behavior: Behavior::Succeed,
    },
    TestCard {
        names: &["pm_card_mastercard"],
        number: "5555555555554444",
        brand: "mastercard",
        funding: "credit",
        country: "US",
        behavior: Behavior::Succeed,
    },
    TestCard {
        names: &["pm_card_amex"],
        number: "378282246310005",
        brand: "amex",
        funding: "credit",
        country: "US",
        behavior: Behavior::Succeed,
    },
    TestCard {
        names: &["pm_card_jcb"],
        number: "3566002020360505",
        brand: "jcb",
        funding: "credit",
        country: "JP",
        behavior: Behavior::Succeed,
    },
    TestCard {
        names: &["pm_card_jp"],
        number: "4000003920000003",
        brand: "visa",
        funding: "credit",
        country: "JP",
        behavior: Behavior::Succeed,
    },
    TestCard {
        names: &["pm_card_visa_chargeDeclined", "pm_card_chargeDeclined"],
        number: "4000000000000002",
        brand: "visa",
        funding: "credit",
        country: "US",
        behavior: Behavior::Decline {
            code: "card_declined",
            decline_code: Some("generic_decline"),
            message: GENERIC,
        },
    },
    TestCard {
        names: &[
            "pm_card_visa_chargeDeclinedInsufficientFunds",
            "pm_card_chargeDeclinedInsufficientFunds",
        ],
        number: "4000000000009995",
        brand: "visa",
        funding: "credit",
        country: "US",
        behavior: Behavior::Decline {
            code: "card_declined",
            decline_code: Some("insufficient_funds"),
            message: "Your card has insufficient funds.",
        },
    },
    TestCard {
        names: &[
            "pm_card_visa_chargeDeclinedLostCard",
            "pm_card_chargeDeclinedLostCard",
        ],
        number: "4000000000009987",
        brand: "visa",
        funding: "credit",
        country: "US",
        behavior: Behavior::Decline {
            code: "card_declined",
            decline_code: Some("lost_card"),
            message: GENERIC,
        },
    },
    TestCard {
        names: &[
            "pm_card_visa_chargeDeclinedStolenCard",
            "pm_card_chargeDeclinedStolenCard",
        ],
        number: "4000000000009979",
        brand: "visa",
        funding: "credit",
        country: "US",
        behavior: Behavior::Decline {
            code: "card_declined",
            decline_code: Some("stolen_card"),
            message: GENERIC,
        },
    },
    TestCard {
        names: &["pm_card_chargeDeclinedExpiredCard"],
        number: "4000000000000069",
        brand: "visa",
        funding: "credit",
        country: "US",
        behavior: Behavior::Decline {
            code: "expired_card",
            decline_code: Some("expired_card"),
            message: "Your card has expired.",
        },
    },
    TestCard {
        names: &["pm_card_chargeDeclinedIncorrectCvc"],
        number: "4000000000000127",
        brand: "visa",
        funding: "credit",
        country: "US",
        behavior: Behavior::Decline {
            code: "incorrect_cvc",
            decline_code: Some("incorrect_cvc"),
            message: "Your card's security code is incorrect.",
        },
    },
    TestCard {
        names: &["pm_card_chargeDeclinedProcessingError"],
        number: "4000000000000119",
        brand: "visa",
        funding: "credit",
        country: "US",
        behavior: Behavior::Decline {
            code: "processing_error",
            decline_code: Some("processing_error"),
            message: "An error occurred while processing your card. Try again in a little bit.",
        },
    },
    TestCard {
        names: &["pm_card_chargeCustomerFail"],
        number: "4000000000000341",
        brand: "visa",
        funding: "credit",
        country: "US",
        behavior: Behavior::Decline {
            code: "card_declined",
            decline_code: Some("generic_decline"),
            message: GENERIC,
        },
    },
    TestCard {
        names: &[DELAYED],
        number: "4000000000000077",
        brand: "visa",
        funding: "credit",
        country: "JP",
        behavior: Behavior::Delayed,
    },
];

/// The test card behind a magic PaymentMethod name (`pm_card_visa`).
pub(crate) fn by_name(name: &str) -> Option<(usize, &'static TestCard)> {
    TEST_CARDS
        .iter()
        .enumerate()
        .find(|(_, card)| card.names.contains(&name))
}

pub(crate) fn by_index(index: usize) -> &'static TestCard {
    TEST_CARDS.get(index).unwrap_or(&TEST_CARDS[0])
}
