#!/usr/bin/env bash
# Fuzzes the Stripe webhook decoder with cargo-fuzz (libFuzzer): the
# `Stripe-Signature` header parser/verifier and the event parser. The
# targets live in fuzz/ (a crate of its own, outside the workspace).
#
#   scripts/fuzz.sh [seconds] [target...]
#
# Runs each target (default: all of them) for `seconds` (default 60) and
# exits non-zero if any of them crashed, after running the others. A crash
# leaves its input in fuzz/artifacts/<target>/; replay it with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run --fuzz-dir fuzz <target> <file>`.
#
# Works on the stable toolchain: RUSTC_BOOTSTRAP=1 lets cargo-fuzz pass its
# -Z (sanitizer) flags. Builds in fuzz/target, separately from the
# workspace's target dir, so the first run compiles the infrastructure
# crate's dependencies again with sanitizer flags. The seeds in
# fuzz/corpus/<target>/ are read but not written: the inputs libFuzzer
# finds go to fuzz/target/corpus/<target>/ and are reused by later runs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-60}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: scripts/fuzz.sh [seconds] [target...]" >&2
    exit 2
fi
shift || true
if (($# > 0)); then
    targets=("$@")
else
    targets=(signature_header event_payload)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz not found, installing it" >&2
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
fuzz=(--fuzz-dir fuzz --target-dir "$PWD/fuzz/target")

start=$SECONDS
cargo fuzz build "${fuzz[@]}"
echo "fuzz.sh: built the fuzz targets in $((SECONDS - start)) s" >&2

failed=()
for target in "${targets[@]}"; do
    work=fuzz/target/corpus/$target
    mkdir -p "$work"
    echo "fuzz.sh: $target for ${seconds} s" >&2
    # The first corpus directory is the one libFuzzer writes to.
    # -timeout: an input that takes 10 s is a hang, and a failure.
    if ! cargo fuzz run "${fuzz[@]}" "$target" "$work" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1; then
        failed+=("$target")
    fi
done

if ((${#failed[@]} > 0)); then
    echo "fuzz.sh: FAILED: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
    exit 1
fi
echo "fuzz.sh: ok (${targets[*]}, ${seconds} s each)" >&2
