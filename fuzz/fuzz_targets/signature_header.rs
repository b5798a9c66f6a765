//! The `Stripe-Signature` header parser and verifier
//! (`StripeWebhookDecoder::verify`, and `decode` through the port).
//!
//! Every input is used twice:
//!
//! 1. As `<header>\n<payload>` (split at the first newline; no newline means
//!    an empty payload), checked with the fixture secrets at the fixture
//!    time: verifying never panics, `decode` reaches the same verdict, and
//!    an accepted header really carries the MAC of the payload under one of
//!    the secrets, for a first `t` within the tolerance.
//! 2. As the source of a (payload, secret, now, tolerance, decoy secrets,
//!    decoy items) case for which a header is built the way Stripe builds
//!    one: it always verifies, and flipping a byte of the signature (which
//!    byte and which bits also come from the input), tampering with the
//!    payload, dropping the signing secret or moving `t` just outside the
//!    tolerance makes it fail.
#![no_main]

use application::ports::webhooks::{WebhookDecoder, WebhookRejection};
use chrono::DateTime;
use hmac::{Hmac, Mac};
use infrastructure::stripe::webhook::{StripeWebhookDecoder, DEFAULT_TOLERANCE_SECONDS};
use libfuzzer_sys::arbitrary::{self, Unstructured};
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;
use sha2::Sha256;

/// `now` and the secrets of crates/infrastructure/tests/fixtures/webhook_signatures.json,
/// so the seed headers taken from it can verify.
const FIXTURE_NOW: i64 = 1_700_000_000;
const FIXTURE_SECRETS: [&str; 3] = [
    "whsec_test_secret",
    "whsec_old_rotated_secret",
    "whsec_new_rotated_secret",
];

/// Mirrors the decoder's limit, so built headers stay under it.
const MAX_HEADER_LEN: usize = 4096;

fuzz_target!(|data: &[u8]| {
    arbitrary_header(data);
    // `Err` only means the input ran out of bytes for a case.
    let _ = round_trip(&mut Unstructured::new(data));
});

fn decoder_for<S: AsRef<str>>(secrets: &[S], tolerance: i64) -> StripeWebhookDecoder {
    StripeWebhookDecoder::new(
        secrets
            .iter()
            .map(|s| SecretString::from(s.as_ref().to_owned()))
            .collect(),
        tolerance,
    )
}

fn mac(secret: &str, t: i64, payload: &[u8]) -> [u8; 32] {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(format!("{t}.").as_bytes());
    mac.update(payload);
    mac.finalize().into_bytes().into()
}

/// The key HMAC really uses for `secret` (RFC 2104): keys longer than the
/// block are hashed, shorter ones padded with zeros. Secrets with the same
/// key (say "" and "\0") are the same secret as far as any MAC goes.
fn hmac_key(secret: &str) -> Vec<u8> {
    use sha2::Digest;
    let mut key = if secret.len() > 64 {
        Sha256::digest(secret.as_bytes()).to_vec()
    } else {
        secret.as_bytes().to_vec()
    };
    while key.last() == Some(&0) {
        key.pop();
    }
    key
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn arbitrary_header(data: &[u8]) {
    let (header, payload) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    // The route only passes headers that are valid strings; garble the rest.
    let header = String::from_utf8_lossy(header);
    let decoder = decoder_for(&FIXTURE_SECRETS, DEFAULT_TOLERANCE_SECONDS);

    assert!(decoder.verify(None, payload, FIXTURE_NOW).is_err());
    let verdict = decoder.verify(Some(&header), payload, FIXTURE_NOW);

    let now = DateTime::from_timestamp(FIXTURE_NOW, 0).expect("in range");
    match (&verdict, decoder.decode(Some(&header), payload, now)) {
        (Ok(()), Ok(_) | Err(WebhookRejection::InvalidPayload(_))) => {}
        (Err(expected), Err(got)) => assert_eq!(*expected, got, "decode and verify disagree"),
        (verdict, decoded) => panic!("verify gave {verdict:?} but decode gave {decoded:?}"),
    }

    if verdict.is_ok() {
        assert!(
            carries_a_valid_mac(&header, payload),
            "accepted a header without a valid v1 for the first t: {header:?}"
        );
    }
}

/// An independent, deliberately plain reading of what an accepted header
/// must contain: its first `t` is a number within the tolerance of
/// FIXTURE_NOW, and some `v1` is that MAC in hex (either case).
fn carries_a_valid_mac(header: &str, payload: &[u8]) -> bool {
    let items: Vec<(&str, &str)> = header
        .split(',')
        .filter_map(|item| item.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim()))
        .collect();
    let Some(t) = items
        .iter()
        .find(|(k, _)| *k == "t")
        .and_then(|(_, v)| v.parse::<i64>().ok())
    else {
        return false;
    };
    if (i128::from(FIXTURE_NOW) - i128::from(t)).abs() > i128::from(DEFAULT_TOLERANCE_SECONDS) {
        return false;
    }
    FIXTURE_SECRETS.iter().any(|secret| {
        let expected = hex(&mac(secret, t, payload));
        items
            .iter()
            .any(|(k, v)| *k == "v1" && v.eq_ignore_ascii_case(&expected))
    })
}

/// One header item besides `t` and the real `v1`.
enum Extra {
    /// A `v1` that is not the signature.
    DecoyV1([u8; 32]),
    /// Stripe's test-mode scheme, ignored.
    V0([u8; 32]),
    /// An empty item (`,,`).
    Empty,
}

struct Case<'a> {
    payload: &'a [u8],
    secret: String,
    /// The other configured secrets, none the same HMAC key as `secret`, in
    /// order; `secret` goes at `slot`.
    decoys: Vec<String>,
    slot: usize,
    tolerance: i64,
    now: i64,
    t: i64,
    extras: Vec<Extra>,
    /// Where `t` and the real `v1` go among the extras.
    t_at: usize,
    v1_at: usize,
    separator: &'static str,
    /// Which byte of the signature to flip, and how.
    flip_at: usize,
    flip: u8,
}

impl<'a> Case<'a> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let secret: String = u.arbitrary()?;
        let mut decoys = Vec::new();
        for _ in 0..u.int_in_range(0..=2)? {
            let decoy: String = u.arbitrary()?;
            if hmac_key(&decoy) != hmac_key(&secret) {
                decoys.push(decoy);
            }
        }
        let slot = u.int_in_range(0..=decoys.len())?;
        let tolerance = if u.arbitrary()? {
            DEFAULT_TOLERANCE_SECONDS
        } else {
            i64::from(u.arbitrary::<u32>()?)
        };
        let now: i64 = u.arbitrary()?;
        let age = u.int_in_range(-tolerance..=tolerance)?;
        let t = now
            .checked_sub(age)
            .ok_or(arbitrary::Error::IncorrectFormat)?;
        let mut extras = Vec::new();
        for _ in 0..u.int_in_range(0..=3)? {
            extras.push(match u.int_in_range(0..=2)? {
                0 => Extra::DecoyV1(u.arbitrary()?),
                1 => Extra::V0(u.arbitrary()?),
                _ => Extra::Empty,
            });
        }
        let t_at = u.int_in_range(0..=extras.len())?;
        let v1_at = u.int_in_range(0..=extras.len())?;
        // Stripe sends ","; the decoder also trims spaces around items.
        let separator = if u.ratio(1, 4)? { ", " } else { "," };
        let flip_at = u.choose_index(32)?;
        let flip = u.arbitrary::<u8>()?.max(1);
        Ok(Self {
            payload: u.bytes(u.len())?,
            secret,
            decoys,
            slot,
            tolerance,
            now,
            t,
            extras,
            t_at,
            v1_at,
            separator,
            flip_at,
            flip,
        })
    }

    fn secrets(&self) -> Vec<&str> {
        let mut secrets: Vec<&str> = self.decoys.iter().map(String::as_str).collect();
        secrets.insert(self.slot, &self.secret);
        secrets
    }

    /// The header for a signature `v1` at time `t`.
    fn header(&self, t: i64, v1: &[u8; 32]) -> String {
        let mut items: Vec<String> = self
            .extras
            .iter()
            .map(|extra| match extra {
                Extra::DecoyV1(bytes) => format!("v1={}", hex(bytes)),
                Extra::V0(bytes) => format!("v0={}", hex(bytes)),
                Extra::Empty => String::new(),
            })
            .collect();
        items.insert(self.v1_at, format!("v1={}", hex(v1)));
        items.insert(self.t_at, format!("t={t}"));
        items.join(self.separator)
    }
}

fn round_trip(u: &mut Unstructured) -> arbitrary::Result<()> {
    let case = Case::arbitrary(u)?;
    let secrets = case.secrets();
    let decoder = decoder_for(&secrets, case.tolerance);
    let signature = mac(&case.secret, case.t, case.payload);
    // A decoy v1 equal to the signature would make the negative checks moot.
    if case
        .extras
        .iter()
        .any(|e| matches!(e, Extra::DecoyV1(d) if *d == signature))
    {
        return Ok(());
    }
    let header = case.header(case.t, &signature);
    assert!(header.len() <= MAX_HEADER_LEN);

    assert_eq!(
        decoder.verify(Some(&header), case.payload, case.now),
        Ok(()),
        "a correctly signed header was refused: {header:?}, secrets {secrets:?}, now {}",
        case.now
    );
    if let Some(now) = DateTime::from_timestamp(case.now, 0) {
        let decoded = decoder.decode(Some(&header), case.payload, now);
        assert!(
            !matches!(decoded, Err(WebhookRejection::InvalidSignature(_))),
            "decode refused a header that verifies: {decoded:?}"
        );
    }

    let mut flipped = signature;
    flipped[case.flip_at] ^= case.flip;
    assert!(
        decoder
            .verify(Some(&case.header(case.t, &flipped)), case.payload, case.now)
            .is_err(),
        "accepted a signature with byte {} flipped",
        case.flip_at
    );

    let tampered = [case.payload, b"x"].concat();
    assert!(decoder.verify(Some(&header), &tampered, case.now).is_err());

    let without_secret: Vec<&str> = secrets
        .iter()
        .copied()
        .filter(|s| *s != case.secret.as_str())
        .collect();
    assert!(
        decoder_for(&without_secret, case.tolerance)
            .verify(Some(&header), case.payload, case.now)
            .is_err(),
        "accepted a header whose signing secret is not configured"
    );

    for outside in [
        case.now.checked_sub(case.tolerance + 1),
        case.now.checked_add(case.tolerance + 1),
    ]
    .into_iter()
    .flatten()
    {
        let header = case.header(outside, &mac(&case.secret, outside, case.payload));
        assert!(
            decoder
                .verify(Some(&header), case.payload, case.now)
                .is_err(),
            "accepted t={outside} at now={} with tolerance {}",
            case.now,
            case.tolerance
        );
    }
    Ok(())
}
