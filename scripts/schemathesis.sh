#!/usr/bin/env bash
# Schemathesis against kessai's own OpenAPI document (GET /openapi.json):
# no 5xx, every status code, content type, header and body as documented,
# schema-valid requests accepted, schema-invalid ones rejected, auth enforced.
#
#   scripts/schemathesis.sh [extra `st run` args...]
#   scripts/schemathesis.sh install     # only (re)create the venv
#
# Builds kessai (`cargo build -p kessai`) unless KESSAI_BIN names a binary,
# starts it on 127.0.0.1 (free port, a fresh SQLite database in a temporary
# directory, the built-in Stripe emulator), registers two users and places
# three orders (so ids that exist can be drawn), runs every schemathesis
# check over every operation with scripts/schemathesis.toml, stops kessai
# again (also on failure or Ctrl-C) and exits with schemathesis' exit code
# (0 only when nothing failed). Schemathesis' summary comes last, followed
# only by kessai's ERROR log lines when the run failed and one closing line.
#
# schemathesis comes from PyPI, pinned with its dependencies in
# scripts/schemathesis-requirements.txt, and lives in a venv under the repo
# (.venv/schemathesis, gitignored), (re)created when missing or made from
# another version of that file (log: .venv/schemathesis-install.log).
#
# Bounded: at most SCHEMATHESIS_MAX_EXAMPLES test cases per operation and
# phase, 10 s per request, and the whole `st run` is stopped after
# SCHEMATHESIS_TIMEOUT seconds. The seed is fixed, so a run is repeatable and a
# failure can be reproduced locally with the same command.
#
# Environment:
#   SCHEMATHESIS_MAX_EXAMPLES   test cases per operation (default 100)
#   SCHEMATHESIS_SEED           hypothesis seed (default 1; `random` for a new one)
#   SCHEMATHESIS_TIMEOUT        seconds for the whole `st run` (default 600)
#   KESSAI_BIN                  kessai binary to test (default: build it)
#   KESSAI_SCHEMATHESIS_DATABASE_URL
#                               database of the tested kessai (default: a new
#                               SQLite file); must be empty, as the drawn ids
#                               are those of the data this script creates
#   KESSAI_SCHEMATHESIS_VENV    venv directory (default REPO/.venv/schemathesis)
#   PYTHON                      interpreter used to create the venv (default python3)
set -euo pipefail

caller_dir=$PWD
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$root"

venv=${KESSAI_SCHEMATHESIS_VENV:-$root/.venv/schemathesis}
requirements=$root/scripts/schemathesis-requirements.txt
config=$root/scripts/schemathesis.toml
max_examples=${SCHEMATHESIS_MAX_EXAMPLES:-100}
seed=${SCHEMATHESIS_SEED:-1}
budget=${SCHEMATHESIS_TIMEOUT:-600}

log() {
    echo "schemathesis.sh: $*" >&2
}

die() {
    log "error: $*"
    exit 1
}

# `python3 -m venv` fails on Debian when python3-venv (ensurepip) is missing.
apt_install_venv() {
    local py=$1 install_log=$2 ver
    [[ $(id -u) -eq 0 ]] || die "'$py -m venv' failed and not root, cannot apt-get install python3-venv; install it"
    command -v apt-get >/dev/null 2>&1 || die "'$py -m venv' failed and apt-get is not available"
    ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    log "'$py -m venv' failed, installing python3-venv with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! {
        apt-get update -q &&
            { apt-get install -y -q --no-install-recommends "python$ver-venv" python3-venv ||
                apt-get install -y -q --no-install-recommends python3-venv; }
    } >>"$install_log" 2>&1; then
        tail -n 30 "$install_log" >&2
        die "apt-get install of python3-venv failed"
    fi
}

install_schemathesis() (
    stamp=$venv/.kessai-requirements
    installed() {
        [[ -x $venv/bin/st && -f $stamp ]] && cmp -s "$requirements" "$stamp"
    }
    installed && exit 0
    mkdir -p "$(dirname "$venv")"
    # Serialise concurrent installs (two runs at once).
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$venv.lock"
        flock 9
        installed && exit 0
    fi
    install_log=$venv-install.log
    : >"$install_log"
    log "installing schemathesis into $venv (log: $install_log)"
    py=${PYTHON:-python3}
    command -v "$py" >/dev/null 2>&1 || die "$py not found"
    rm -rf "$venv"
    if ! "$py" -m venv "$venv" >>"$install_log" 2>&1; then
        rm -rf "$venv"
        apt_install_venv "$py" "$install_log"
        "$py" -m venv "$venv" >>"$install_log" 2>&1 || {
            rm -rf "$venv"
            tail -n 30 "$install_log" >&2
            die "could not create a venv with '$py -m venv'"
        }
    fi
    if ! "$venv/bin/python" -m pip install --disable-pip-version-check --no-input \
        -q -r "$requirements" >>"$install_log" 2>&1 ||
        ! "$venv/bin/st" --version >>"$install_log" 2>&1; then
        tail -n 30 "$install_log" >&2
        rm -rf "$venv"
        die "pip install of schemathesis failed"
    fi
    cp "$requirements" "$stamp"
)

if [[ ${1:-} == install ]]; then
    install_schemathesis
    exit 0
fi

install_schemathesis
py=$venv/bin/python

if [[ -n ${KESSAI_BIN:-} ]]; then
    bin=$KESSAI_BIN
else
    log "cargo build -p kessai"
    # The artifact's path, wherever the target directory is.
    bin=$(cargo build -p kessai --bin kessai --message-format=json-render-diagnostics |
        "$py" -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "kessai" and m.get("executable"):
        print(m["executable"])')
fi
[[ -x $bin ]] || die "no kessai binary at '$bin'"

work=$(mktemp -d "${TMPDIR:-/tmp}/kessai-schemathesis.XXXXXX")
server_pid=
st_pid=

# Stops PID (a child of this script): TERM, then KILL after ~5 s.
stop() {
    local pid=$1
    if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

# shellcheck disable=SC2317  # invoked by the trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM HUP
    stop "$st_pid"
    stop "$server_pid"
    rm -rf "$work"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# Start kessai on a free port (picked here, so retried if taken meanwhile).
for attempt in 1 2 3; do
    port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    url=http://127.0.0.1:$port
    env -u STRIPE_SECRET_KEY -u STRIPE_API_BASE -u STRIPE_WEBHOOK_SECRET -u CATALOG_FILE \
        BIND_ADDR="127.0.0.1:$port" \
        DATABASE_URL="${KESSAI_SCHEMATHESIS_DATABASE_URL:-sqlite://$work/kessai.db}" \
        AUTH_RATE_LIMIT_PER_ADDRESS=100000 AUTH_RATE_LIMIT_PER_EMAIL=100000 \
        "$bin" </dev/null >"$work/kessai.log" 2>&1 &
    server_pid=$!
    if "$py" - "$url" "$server_pid" <<'EOF'; then
import os, sys, time, urllib.request
url, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 60
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit(1)
    time.sleep(0.05)
sys.exit(1)
EOF
        break
    fi
    stop "$server_pid"
    server_pid=
    log "kessai did not start (attempt $attempt); its log:"
    tail -n 20 "$work/kessai.log" >&2
    [[ $attempt -lt 3 ]] || die "kessai did not start"
done
log "kessai at $url ($bin)"

# Two users and three orders: user A owns a pending and a cancelled order,
# user B one pending order (A reading it is a 403). Prints A's token and the
# dictionaries of ids for the configuration.
config_run=$work/schemathesis.toml
cp "$config" "$config_run"
token=$("$py" - "$url" "$config_run" <<'EOF'
import json, sys, urllib.request
url, config = sys.argv[1], sys.argv[2]

def call(method, path, body=None, token=None):
    request = urllib.request.Request(url + path, method=method,
                                     data=None if body is None else json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)

def user(email):
    return call("POST", "/api/auth/register",
                {"email": email, "password": "schemathesis-password"})["access_token"]

a, b = user("schemathesis-a@example.jp"), user("schemathesis-b@example.jp")
products = [p["id"] for p in call("GET", "/api/products")["products"]]
order = lambda token, product: call("POST", "/api/orders",
                                     {"items": [{"product_id": product, "quantity": 1}]}, token)["id"]
pending, cancelled, others = order(a, products[0]), order(a, products[1]), order(b, products[0])
call("POST", f"/api/orders/{cancelled}/cancel", {"reason": "schemathesis"}, a)
with open(config, "a") as f:
    f.write("\n# Written by scripts/schemathesis.sh\n")
    f.write(f"[dictionaries.order-ids]\nvalues = {[pending, cancelled, others]}\n")
    f.write(f"[dictionaries.product-ids]\nvalues = {products}\n")
print(a)
EOF
) || {
    tail -n 20 "$work/kessai.log" >&2
    die "could not create the test data"
}
# Schemathesis' and hypothesis' own files go to the temporary directory.
printf '[cache]\ndirectory = "%s"\n' "$work/schemathesis-cache" >>"$config_run"
export HYPOTHESIS_STORAGE_DIRECTORY=$work/hypothesis

seed_args=(--seed "$seed")
[[ $seed != random ]] || seed_args=()

log "st run $url/openapi.json (max $max_examples examples per operation, seed $seed)"
started=$SECONDS
rc=0
# In the background, so that a signal stops it at once (see cleanup); from
# the caller's directory, so that relative paths in "$@" (--report-dir)
# mean what they say. One worker: with more, CPython 3.11's `ast` (which
# hypothesis calls from each worker thread) fails now and then with
# "SystemError: AST constructor recursion depth mismatch", and the order of
# requests, so the run, would no longer be repeatable.
(
    cd "$caller_dir"
    KESSAI_SCHEMATHESIS_TOKEN=$token exec timeout --kill-after=30 "$budget" \
        "$venv/bin/st" --config-file "$config_run" run "$url/openapi.json" \
        --checks all \
        --max-examples "$max_examples" \
        "${seed_args[@]}" \
        --workers 1 \
        --request-timeout 10 \
        --generation-database none \
        "$@"
) &
st_pid=$!
wait "$st_pid" || rc=$?
st_pid=

if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    log "st run did not finish within ${budget} s (SCHEMATHESIS_TIMEOUT)"
fi
if [[ $rc -ne 0 ]]; then
    if grep -q ' ERROR ' "$work/kessai.log"; then
        log "kessai logged errors:"
        grep ' ERROR ' "$work/kessai.log" | tail -n 20 >&2
    fi
    log "FAILED (exit $rc) after $((SECONDS - started)) s"
else
    log "passed in $((SECONDS - started)) s"
fi
exit "$rc"
