#!/usr/bin/env python3
"""Generate Stripe-Signature test vectors with the official `stripe` library.

Writes crates/infrastructure/tests/fixtures/webhook_signatures.json. Every
header is made by the library's own signing code
(`WebhookSignature.generate_signature_header` / `_compute_signature`), and
every case's `expect` is what the library's own verifier
(`WebhookSignature.verify_header`, cross-checked against
`Webhook.construct_event`) decides at the case's `now` with tolerance 300:
"ok" if it accepts with ANY of the case's secrets, else "invalid_signature".

Where our verifier (crates/infrastructure/src/stripe/webhook.rs) is meant to
decide differently, the case carries `ours` (our decision) and `note` (why).
`ours` is written by hand below; `expect` never is.

Usage (see README.md beside this file):
    python3 -m venv /tmp/stripe-venv
    /tmp/stripe-venv/bin/pip install stripe==16.1.0
    /tmp/stripe-venv/bin/python scripts/webhook-vectors/make_vectors.py
"""

import json
import sys
import types
from pathlib import Path
from unittest import mock

import stripe
from stripe import SignatureVerificationError, Webhook, WebhookSignature

STRIPE_VERSION = "16.1.0"
TOLERANCE = 300
NOW = 1_700_000_000
SECRET = "whsec_test_secret"
OLD_SECRET = "whsec_old_rotated_secret"
NEW_SECRET = "whsec_new_rotated_secret"
OTHER_SECRET = "whsec_not_the_right_one"

OUT = (
    Path(__file__).resolve().parents[2]
    / "crates/infrastructure/tests/fixtures/webhook_signatures.json"
)

OK = "ok"
INVALID = "invalid_signature"


def event(event_id, obj, created=NOW):
    """A Stripe event body, compact and key-ordered as Stripe sends it."""
    return json.dumps(
        {
            "id": event_id,
            "object": "event",
            "api_version": "2024-06-20",
            "created": created,
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
            "type": "payment_intent.succeeded",
        },
        ensure_ascii=False,
        separators=(",", ":"),
    )


def intent(pi_id, metadata, description=None):
    return {
        "id": pi_id,
        "object": "payment_intent",
        "amount": 16500,
        "currency": "jpy",
        "description": description,
        "metadata": metadata,
        "status": "succeeded",
    }


PAYLOAD = event("evt_1vectors", intent("pi_1vectors", {"order_id": "1"}))
JAPANESE = event(
    "evt_2japanese",
    intent(
        "pi_2japanese",
        {"order_id": "2", "note": "お届けは午前中にお願いします。"},
        description="決済テスト：抹茶ラテ×2、どら焼き（つぶあん）🍵",
    ),
)


def large_payload(target=100 * 1024):
    """A ~100 KB event: an order with many line items in its metadata."""
    metadata = {}
    i = 0
    body = ""
    while len(body.encode("utf-8")) < target:
        metadata[f"line_{i:04d}"] = (
            f"sku=KS-{i:05d};qty={i % 7 + 1};name=商品{i};price={(i * 37) % 10000}"
        )
        i += 1
        if i % 100 == 0:
            body = event("evt_3large", intent("pi_3large", metadata))
    return event("evt_3large", intent("pi_3large", metadata))


LARGE = large_payload()


def header(payload, secret, t):
    """The library's own header: `t=<t>,v1=<hex>`."""
    return WebhookSignature.generate_signature_header(payload, secret, timestamp=t)


def sig(payload, secret, t):
    """The library's own v1 signature over `<t>.<payload>`."""
    return WebhookSignature._compute_signature(f"{t}.{payload}", secret)


def garbage(n):
    return f"{n:02x}" * 32


class FrozenClock:
    """Replaces the `time` module the library's verifier reads `now` from."""

    def __init__(self, now):
        self.now = now

    def __enter__(self):
        module = sys.modules[WebhookSignature.__module__]
        self.patch = mock.patch.object(
            module, "time", types.SimpleNamespace(time=lambda: float(self.now))
        )
        self.patch.__enter__()
        return self

    def __exit__(self, *exc):
        return self.patch.__exit__(*exc)


def library_accepts(payload, hdr, secret, now):
    """verify_header's verdict, and construct_event's as a cross-check."""
    with FrozenClock(now):
        try:
            WebhookSignature.verify_header(payload, hdr, secret, TOLERANCE)
            verified = True
        except SignatureVerificationError:
            verified = False
        try:
            constructed = Webhook.construct_event(payload, hdr, secret, TOLERANCE)
            assert constructed.id == json.loads(payload)["id"]
            built = True
        except SignatureVerificationError:
            built = False
    if verified != built:
        raise AssertionError(f"verify_header and construct_event disagree on {hdr!r}")
    return verified


def library_verdict(payload, hdr, secrets, now):
    return OK if any(library_accepts(payload, hdr, s, now) for s in secrets) else INVALID


CASES = []


def case(name, hdr, *, payload=PAYLOAD, secrets=(SECRET,), now=NOW, ours=None, note=None):
    """Records a case; `ours` is our verifier's intended verdict, if known to differ."""
    expect = library_verdict(payload, hdr, list(secrets), now)
    entry = {
        "name": name,
        "payload": payload,
        "header": hdr,
        "secrets": list(secrets),
        "now": now,
        "expect": expect,
    }
    if ours is not None:
        if ours == expect:
            raise AssertionError(f"{name}: `ours` given but the library agrees ({expect})")
        if not note:
            raise AssertionError(f"{name}: a disagreement needs a note")
        entry["ours"] = ours
        entry["note"] = note
    elif note:
        entry["note"] = note
    CASES.append(entry)


def build():
    good = sig(PAYLOAD, SECRET, NOW)

    # -- valid, and the tolerance window ------------------------------------
    case("valid", header(PAYLOAD, SECRET, NOW))
    case("valid_signed_300s_ago", header(PAYLOAD, SECRET, NOW - 300))
    case("signed_301s_ago", header(PAYLOAD, SECRET, NOW - 301))
    case("signed_a_day_ago", header(PAYLOAD, SECRET, NOW - 86_400))
    case("valid_signed_300s_in_the_future", header(PAYLOAD, SECRET, NOW + 300))
    future = (
        "the library only rejects timestamps older than now - tolerance; ours also "
        "rejects timestamps more than the tolerance in the future (|now - t| > 300), "
        "so a header cannot be pre-signed for later replay"
    )
    case("signed_301s_in_the_future", header(PAYLOAD, SECRET, NOW + 301), ours=INVALID, note=future)
    case("signed_a_day_in_the_future", header(PAYLOAD, SECRET, NOW + 86_400), ours=INVALID, note=future)

    # -- payload and secret ---------------------------------------------------
    case("tampered_payload", header(PAYLOAD, SECRET, NOW), payload=PAYLOAD.replace("16500", "1650"))
    case("payload_with_appended_newline", header(PAYLOAD, SECRET, NOW), payload=PAYLOAD + "\n")
    case("wrong_secret", header(PAYLOAD, OTHER_SECRET, NOW))
    case("no_secret_configured", header(PAYLOAD, SECRET, NOW), secrets=())
    case(
        "empty_secret",
        header(PAYLOAD, "", NOW),
        secrets=("",),
        ours=OK,
        note="the library refuses an empty/blank secret outright; ours would HMAC with "
        "the empty key. Not reachable in kessai: config drops empty STRIPE_WEBHOOK_SECRET "
        "entries before the decoder is built",
    )
    case("signature_for_another_timestamp", f"t={NOW},v1={sig(PAYLOAD, SECRET, NOW - 1)}")
    case("truncated_signature", f"t={NOW},v1={good[:32]}")

    # -- several entries ------------------------------------------------------
    case("several_v1_one_matches", f"t={NOW},v1={garbage(1)},v1={good},v1={garbage(2)}")
    case("several_v1_none_match", f"t={NOW},v1={garbage(1)},v1={garbage(2)}")
    case("v0_only", f"t={NOW},v0={good}")
    case("v0_and_valid_v1", f"t={NOW},v0={garbage(3)},v1={good}")
    case("empty_v1", f"t={NOW},v1=")
    case("v1_before_t", f"v1={good},t={NOW}")
    case("item_without_equals_sign", f"t={NOW},v1={good},junk")
    case("unknown_scheme_is_ignored", f"t={NOW},v1={good},v9=whatever")
    case(
        "header_longer_than_4096_bytes",
        f"t={NOW}," + ",".join(f"v1={garbage(i % 256)}" for i in range(60)) + f",v1={good}",
        ours=INVALID,
        note="ours refuses headers over 4096 bytes before parsing (Stripe sends one v1 per "
        "live secret, at most a few); the library has no such limit",
    )

    # -- the timestamp ----------------------------------------------------------
    case("no_t", f"v1={good}")
    case("non_numeric_t", f"t=abc,v1={good}")
    case("empty_t", f"t=,v1={good}")
    case("t_with_leading_plus", f"t=+{NOW},v1={good}")
    case("t_with_leading_zero", f"t=0{NOW},v1={good}")
    case(
        "t_with_underscores",
        f"t={NOW:_},v1={good}",
        ours=INVALID,
        note="Python's int() accepts '1_700_000_000'; ours parses t as a plain integer "
        "and rejects it (Stripe never sends underscores)",
    )
    case(
        "second_t_non_numeric",
        f"t={NOW},t=abc,v1={good}",
        ours=INVALID,
        note="the library reads only the first t; ours rejects a header with any "
        "non-numeric t (Stripe sends exactly one t)",
    )
    case("first_t_wins", f"t={NOW - 1000},t={NOW},v1={good}")
    big = 10**20
    case(
        "t_beyond_i64",
        f"t={big},v1={sig(PAYLOAD, SECRET, big)}",
        ours=INVALID,
        note="Python integers are unbounded, and the library has no future bound; ours "
        "rejects a t that does not fit in i64 (and would reject it as too far in the "
        "future anyway)",
    )
    i64_min = -(2**63)
    case(
        "t_is_i64_min",
        f"t={i64_min},v1={sig(PAYLOAD, SECRET, i64_min)}",
        note="correctly signed; now - t overflows i64, which must not panic",
    )
    case("t_is_negative", f"t=-1,v1={sig(PAYLOAD, SECRET, -1)}")

    # -- header shape -----------------------------------------------------------
    case("empty_header", "")
    case("missing_header", None)
    case("garbage_header", "garbage")
    lenient = (
        "the library splits on ',' and '=' without trimming, so the padded key or "
        "value does not match; ours trims whitespace around items, keys and values. "
        "The HMAC must still match, so this accepts nothing forged (Stripe never "
        "sends spaces)"
    )
    case("space_after_comma", f"t={NOW}, v1={good}", ours=OK, note=lenient)
    case("spaces_around_equals", f"t = {NOW},v1 = {good}", ours=OK, note=lenient)
    case("trailing_space_after_signature", f"t={NOW},v1={good} ", ours=OK, note=lenient)
    case("leading_space_before_header", f" t={NOW},v1={good}", ours=OK, note=lenient)
    case("space_inside_t_value", f"t= {NOW},v1={good}")
    case(
        "uppercase_hex_signature",
        f"t={NOW},v1={good.upper()}",
        ours=OK,
        note="the library compares hex strings, so case matters; ours decodes the hex "
        "and compares bytes, so uppercase hex of the right MAC passes",
    )
    # A signature with a byte below 0x10, its leading "0" written as "+": some
    # integer parsers (Rust's from_str_radix among them) read "+a" as 0x0a.
    t_plus, padded = next(
        (t, s)
        for t in range(NOW, NOW - TOLERANCE, -1)
        for s in [sig(PAYLOAD, SECRET, t)]
        if any(s[i] == "0" for i in range(0, 64, 2))
    )
    plus = "".join(
        "+" + padded[i + 1] if padded[i] == "0" else padded[i : i + 2] for i in range(0, 64, 2)
    )
    case("valid_for_hex_with_plus_signs", f"t={t_plus},v1={padded}")
    case(
        "hex_with_plus_signs",
        f"t={t_plus},v1={plus}",
        note="the right MAC with '0x' bytes written '+x': not hex, so no match",
    )

    # -- secret rotation ----------------------------------------------------------
    rotated = (OLD_SECRET, NEW_SECRET)
    case("rotation_signed_with_old", header(PAYLOAD, OLD_SECRET, NOW), secrets=rotated)
    case("rotation_signed_with_new", header(PAYLOAD, NEW_SECRET, NOW), secrets=rotated)
    both = f"t={NOW},v1={sig(PAYLOAD, NEW_SECRET, NOW)},v1={sig(PAYLOAD, OLD_SECRET, NOW)}"
    case("rotation_header_with_both_v1_old_secret_only", both, secrets=(OLD_SECRET,))
    case("rotation_header_with_both_v1_new_secret_only", both, secrets=(NEW_SECRET,))
    case("rotation_signed_with_neither", header(PAYLOAD, OTHER_SECRET, NOW), secrets=rotated)
    case("rotation_signed_with_old_too_old", header(PAYLOAD, OLD_SECRET, NOW - 301), secrets=rotated)

    # -- unicode and size -----------------------------------------------------------
    case("unicode_payload_japanese", header(JAPANESE, SECRET, NOW), payload=JAPANESE)
    case(
        "unicode_payload_tampered",
        header(JAPANESE, SECRET, NOW),
        payload=JAPANESE.replace("午前中", "午後"),
    )
    escaped = json.dumps(json.loads(JAPANESE), separators=(",", ":"))
    case(
        "unicode_payload_reescaped_as_ascii",
        header(JAPANESE, SECRET, NOW),
        payload=escaped,
        note="same JSON value with \\uXXXX escapes: different bytes, so no match",
    )
    case("large_payload_100kb", header(LARGE, SECRET, NOW), payload=LARGE)
    assert LARGE.endswith('succeeded"}')
    case(
        "large_payload_tampered_at_the_end",
        header(LARGE, SECRET, NOW),
        payload=LARGE[: -len('d"}')] + 'D"}',
    )


def main():
    if stripe.VERSION != STRIPE_VERSION:
        sys.exit(f"expected stripe=={STRIPE_VERSION}, found {stripe.VERSION}")
    build()
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names)), "duplicate case names"
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", encoding="utf-8") as f:
        json.dump(CASES, f, ensure_ascii=False, indent=2)
        f.write("\n")
    differ = [c["name"] for c in CASES if "ours" in c]
    print(f"wrote {len(CASES)} cases to {OUT}")
    print(f"{len(differ)} where ours differs from the library: {', '.join(differ)}")


if __name__ == "__main__":
    main()
