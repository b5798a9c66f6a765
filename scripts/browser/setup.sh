#!/usr/bin/env bash
# Makes the browser test runnable: Debian's Chromium and playwright-core
# (which drives it; it downloads no browser of its own). Idempotent.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [[ ! -x /usr/bin/chromium ]]; then
    echo "browser/setup.sh: installing chromium (Debian)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq chromium >/dev/null
fi
if [[ ! -d "$here/node_modules/playwright-core" ]]; then
    echo "browser/setup.sh: installing playwright-core (npm)" >&2
    (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
