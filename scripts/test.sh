#!/usr/bin/env bash
# The project's test command.
#
#   scripts/test.sh [extra cargo-nextest args...]
#   SKIP_LINT=1 scripts/test.sh     # skip rustfmt, clippy and the layer check
#
# Starts a throwaway PostgreSQL and a localstripe (both stopped again on exit,
# including failures and Ctrl-C), exports their URLs as TEST_POSTGRES_URL
# (tests create a fresh database per test on it) and TEST_LOCALSTRIPE_URL (a
# fake Stripe API, shared by all tests: see docs/localstripe.md), runs the
# lints and then the whole test suite with cargo-nextest. Exits with nextest's
# exit code; nextest's summary is the last thing printed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

pg_dir=$(mktemp -d /tmp/kessai-pg.XXXXXX)
ls_dir=$(mktemp -d /tmp/kessai-localstripe.XXXXXX)

# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    # Quiet: nothing may be printed after nextest's summary.
    bash scripts/localstripe.sh stop "$ls_dir" >/dev/null 2>&1 || true
    bash scripts/pg-throwaway.sh stop "$pg_dir" >/dev/null 2>&1 || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

TEST_POSTGRES_URL=$(bash scripts/pg-throwaway.sh start "$pg_dir")
export TEST_POSTGRES_URL
echo "test.sh: throwaway PostgreSQL at $TEST_POSTGRES_URL" >&2

TEST_LOCALSTRIPE_URL=$(bash scripts/localstripe.sh start "$ls_dir")
export TEST_LOCALSTRIPE_URL
echo "test.sh: localstripe at $TEST_LOCALSTRIPE_URL" >&2

# Headless Chromium and playwright-core for the checkout-page test.
bash scripts/browser/setup.sh

if [[ ${SKIP_LINT:-0} != 1 ]]; then
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings
    bash scripts/check-layers.sh
fi

# The API against its own OpenAPI document: no 5xx, every answer as specified.
bash scripts/schemathesis.sh

if ! cargo nextest --version >/dev/null 2>&1; then
    echo "test.sh: cargo-nextest not found, installing it" >&2
    cargo install cargo-nextest --locked
fi

rc=0
cargo nextest run --workspace --no-fail-fast "$@" || rc=$?
exit "$rc"
