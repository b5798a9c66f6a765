#!/usr/bin/env bash
# Asserts the onion dependency direction of the workspace:
# inner layers must not (transitively, through normal dependencies) depend on
# outer-layer crates or on I/O frameworks.
#
#   scripts/check-layers.sh
#
# Exits 1 and lists every violation, else prints "layer check: ok (N rules)"
# where N counts (package, forbidden crate) pairs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# "package: forbidden crates..."
rules=(
    "domain: sqlx axum reqwest tokio hyper"
    "application: sqlx axum reqwest hyper"
    "api: infrastructure sqlx"
)

# Look at dependencies for every target platform, not only the host's, so a
# cfg(target_os = ...) dependency cannot sneak past the check.
tree_args=(-e normal --target all)

indent() { sed 's/^/    /'; }

violations=0
checked=0
errors=0

for rule in "${rules[@]}"; do
    pkg=${rule%%:*}
    read -r -a forbidden <<<"${rule#*:}"

    # Full normal-dependency tree of the package, one "name vX.Y.Z ..." per line.
    if ! tree=$(cargo tree -p "$pkg" "${tree_args[@]}" --prefix none --format '{p}'); then
        echo "layer check: ERROR: 'cargo tree -p $pkg' failed (is '$pkg' a workspace package?)" >&2
        errors=$((errors + 1))
        continue
    fi

    for bad in "${forbidden[@]}"; do
        checked=$((checked + 1))

        # 1. Inverted tree: exit 0 with output means $pkg reaches $bad.
        #    A non-zero exit ("did not match any packages", or an ambiguous
        #    spec when several versions are locked) or empty output means
        #    nothing was shown; check 2 covers the ambiguous case.
        inverted=
        if out=$(cargo tree -p "$pkg" "${tree_args[@]}" -i "$bad" 2>/dev/null) && [[ -n $out ]]; then
            inverted=$out
        fi

        # 2. Plain tree: is the crate anywhere in it?
        matches=$(grep -E "^${bad} v" <<<"$tree" | sort -u || true)

        if [[ -n $inverted || -n $matches ]]; then
            violations=$((violations + 1))
            echo "layer check: VIOLATION: '$pkg' depends on '$bad'" >&2
            if [[ -n $inverted ]]; then
                echo "  dependency path (cargo tree -p $pkg -e normal --target all -i $bad):" >&2
                indent <<<"$inverted" >&2
            else
                echo "  found in 'cargo tree -p $pkg -e normal':" >&2
                indent <<<"$matches" >&2
                echo "  (see the path with: cargo tree -p $pkg -e normal --target all -i $bad@VERSION)" >&2
            fi
        fi
    done
done

if ((errors > 0)); then
    echo "layer check: FAILED: could not inspect $errors package(s)" >&2
    exit 1
fi
if ((violations > 0)); then
    echo "layer check: FAILED: $violations violation(s) of $checked rules" >&2
    exit 1
fi
echo "layer check: ok ($checked rules)"
