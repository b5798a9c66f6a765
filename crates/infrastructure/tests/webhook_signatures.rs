#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Our `Stripe-Signature` verifier against vectors made by the official
//! `stripe` Python library (`scripts/webhook-vectors/make_vectors.py`).
//!
//! Each case's `expect` is the library's verdict (tolerance 300, accepted if
//! any of the case's secrets passes); where ours deliberately decides
//! otherwise the case says so in `ours`, with a `note`.

use std::collections::BTreeSet;

use application::ports::webhooks::{WebhookDecoder, WebhookRejection};
use chrono::DateTime;
use infrastructure::stripe::webhook::{StripeWebhookDecoder, DEFAULT_TOLERANCE_SECONDS};
use secrecy::SecretString;
use serde::Deserialize;

const FIXTURE: &str = include_str!("fixtures/webhook_signatures.json");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    payload: String,
    header: Option<String>,
    secrets: Vec<String>,
    now: i64,
    expect: Verdict,
    #[serde(default)]
    ours: Option<Verdict>,
    #[serde(default)]
    note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Verdict {
    Ok,
    InvalidSignature,
}

impl Case {
    /// What our verifier should decide: the library's verdict unless the
    /// fixture records a deliberate difference.
    fn ours(&self) -> Verdict {
        self.ours.unwrap_or(self.expect)
    }

    fn decoder(&self) -> StripeWebhookDecoder {
        StripeWebhookDecoder::new(
            self.secrets
                .iter()
                .map(|s| SecretString::from(s.clone()))
                .collect(),
            DEFAULT_TOLERANCE_SECONDS,
        )
    }
}

fn cases() -> Vec<Case> {
    serde_json::from_str(FIXTURE).expect("webhook_signatures.json is readable")
}

#[test]
fn fixture_covers_the_required_cases() {
    let cases = cases();
    let names: BTreeSet<&str> = cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), cases.len(), "case names are unique");
    for required in [
        "valid",
        "valid_signed_300s_ago",
        "signed_301s_ago",
        "valid_signed_300s_in_the_future",
        "signed_301s_in_the_future",
        "tampered_payload",
        "wrong_secret",
        "several_v1_one_matches",
        "v0_only",
        "no_t",
        "non_numeric_t",
        "empty_header",
        "space_after_comma",
        "rotation_signed_with_old",
        "rotation_signed_with_new",
        "unicode_payload_japanese",
        "large_payload_100kb",
    ] {
        assert!(names.contains(required), "fixture lacks {required}");
    }
    for case in &cases {
        if case.ours.is_some() {
            assert_ne!(
                case.ours,
                Some(case.expect),
                "{}: `ours` is redundant",
                case.name
            );
            assert!(
                case.note.is_some(),
                "{}: a difference needs a note",
                case.name
            );
        }
    }
    let large = cases
        .iter()
        .find(|c| c.name == "large_payload_100kb")
        .unwrap();
    assert!(large.payload.len() >= 100 * 1024);
    let japanese = cases
        .iter()
        .find(|c| c.name == "unicode_payload_japanese")
        .unwrap();
    assert!(japanese.payload.contains("午前中"));
}

#[test]
fn verify_agrees_with_the_official_library() {
    let mut disagreements = Vec::new();
    for case in cases() {
        let got =
            match case
                .decoder()
                .verify(case.header.as_deref(), case.payload.as_bytes(), case.now)
            {
                Ok(()) => Verdict::Ok,
                Err(WebhookRejection::InvalidSignature(_)) => Verdict::InvalidSignature,
                Err(other) => panic!("{}: verify returned {other:?}", case.name),
            };
        if got != case.ours() {
            disagreements.push(format!(
                "{}: ours {got:?}, expected {:?} (library {:?}), header {:?}",
                case.name,
                case.ours(),
                case.expect,
                case.header.as_deref().map(|h| h.get(..120).unwrap_or(h)),
            ));
        }
    }
    assert!(
        disagreements.is_empty(),
        "verifier disagrees:\n{}",
        disagreements.join("\n")
    );
}

#[test]
fn decode_verifies_before_parsing() {
    for case in cases() {
        let now = DateTime::from_timestamp(case.now, 0).unwrap();
        let result = case
            .decoder()
            .decode(case.header.as_deref(), case.payload.as_bytes(), now);
        match case.ours() {
            Verdict::Ok => {
                let event = result.unwrap_or_else(|e| panic!("{}: {e:?}", case.name));
                let body: serde_json::Value = serde_json::from_str(&case.payload).unwrap();
                assert_eq!(event.id, body["id"].as_str().unwrap(), "{}", case.name);
            }
            Verdict::InvalidSignature => assert!(
                matches!(result, Err(WebhookRejection::InvalidSignature(_))),
                "{}: {result:?}",
                case.name
            ),
        }
    }
}
