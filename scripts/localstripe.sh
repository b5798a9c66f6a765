#!/usr/bin/env bash
# Throwaway localstripe (a fake, stateful Stripe API server) for tests.
#
#   scripts/localstripe.sh start DIR   # prints http://127.0.0.1:PORT
#   scripts/localstripe.sh stop DIR    # stops the server and removes DIR (idempotent)
#   scripts/localstripe.sh install     # installs localstripe into .venv/localstripe if missing
#
# Can also be sourced; it then defines localstripe_start, localstripe_stop and
# localstripe_install (each runs in a subshell, so the caller's shell options
# are left alone).
#
# localstripe comes from PyPI, pinned with its dependencies in
# scripts/localstripe-requirements.txt, and lives in a venv under the repo
# (.venv/localstripe, gitignored); `install` (re)creates it when it is missing
# or was made from another version of that file, logging to
# .venv/localstripe-install.log. The server is run by
# scripts/localstripe_serve.py, which listens on 127.0.0.1 only (localstripe's
# own CLI binds every interface) on a free port picked at run time, keeps its
# state in memory only, and logs to DIR/log. Its PID is in DIR/pid and its
# port in DIR/port. See docs/localstripe.md for how localstripe differs from
# Stripe.
#
# Environment:
#   PYTHON                    interpreter used to create the venv (default python3)
#   KESSAI_LOCALSTRIPE_VENV   venv directory (default REPO/.venv/localstripe)

_ls_marker=.kessai-localstripe
_ls_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)

_ls_die() {
    echo "localstripe: error: $*" >&2
    exit 1
}

_ls_log() {
    echo "localstripe: $*" >&2
}

_ls_venv() {
    echo "${KESSAI_LOCALSTRIPE_VENV:-$_ls_root/.venv/localstripe}"
}

_ls_tail_log() {
    local log=$1
    if [[ -f $log ]]; then
        echo "---- last lines of $log ----" >&2
        tail -n 30 "$log" >&2
        echo "----" >&2
    fi
}

# Is PID the launcher started for DIR? (Never signal anything else.)
_ls_is_ours() {
    local pid=$1 dir=$2
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    local args
    args=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    grep -q 'localstripe_serve\.py$' <<<"$args" && grep -Fxq -- "--dir=$dir" <<<"$args"
}

# Kill PID if it is ours: SIGTERM, then SIGKILL after ~5 s.
_ls_kill() {
    local pid=$1 dir=$2
    _ls_is_ours "$pid" "$dir" || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 50); do
        _ls_is_ours "$pid" "$dir" || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 20); do
        _ls_is_ours "$pid" "$dir" || return 0
        sleep 0.1
    done
}

# `python3 -m venv` fails on Debian when python3-venv (ensurepip) is missing.
_ls_apt_install_venv() {
    local py=$1 log=$2
    if [[ $(id -u) -ne 0 ]]; then
        _ls_die "'$py -m venv' failed and not root, cannot apt-get install python3-venv; install it"
    fi
    command -v apt-get >/dev/null 2>&1 || _ls_die "'$py -m venv' failed and apt-get is not available"
    local ver
    ver=$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
    _ls_log "'$py -m venv' failed, installing python3-venv with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    if ! {
        apt-get update -q &&
            { apt-get install -y -q --no-install-recommends "python$ver-venv" python3-venv ||
                apt-get install -y -q --no-install-recommends python3-venv; }
    } >>"$log" 2>&1; then
        _ls_tail_log "$log"
        _ls_die "apt-get install of python3-venv failed"
    fi
}

localstripe_install() (
    set -euo pipefail
    venv=$(_ls_venv)
    req=$_ls_root/scripts/localstripe-requirements.txt
    stamp=$venv/.kessai-requirements
    [[ -f $req ]] || _ls_die "$req is missing"

    installed() {
        [[ -x $venv/bin/python && -f $stamp ]] && cmp -s "$req" "$stamp"
    }
    installed && exit 0

    parent=$(dirname "$venv")
    mkdir -p "$parent"
    # Serialise concurrent installs (two test runs at once).
    if command -v flock >/dev/null 2>&1; then
        exec 9>"$venv.lock"
        flock 9
        installed && exit 0
    fi

    log=$venv-install.log
    : >"$log"
    _ls_log "installing localstripe into $venv (log: $log)"

    py=${PYTHON:-python3}
    command -v "$py" >/dev/null 2>&1 || _ls_die "$py not found"
    rm -rf "$venv"
    if ! "$py" -m venv "$venv" >>"$log" 2>&1; then
        rm -rf "$venv"
        _ls_apt_install_venv "$py" "$log"
        if ! "$py" -m venv "$venv" >>"$log" 2>&1; then
            rm -rf "$venv"
            _ls_tail_log "$log"
            _ls_die "could not create a venv with '$py -m venv'"
        fi
    fi
    if ! "$venv/bin/python" -m pip install --disable-pip-version-check --no-input \
        -q -r "$req" >>"$log" 2>&1; then
        _ls_tail_log "$log"
        rm -rf "$venv"
        _ls_die "pip install of localstripe failed"
    fi
    if ! "$venv/bin/python" -c 'import aiohttp, localstripe.server' >>"$log" 2>&1; then
        _ls_tail_log "$log"
        rm -rf "$venv"
        _ls_die "localstripe installed but cannot be imported"
    fi
    cp "$req" "$stamp"
)

localstripe_start() (
    set -euo pipefail
    dir=${1:-}
    [[ -n $dir ]] || _ls_die "usage: localstripe.sh start DIR"

    localstripe_install
    py=$(_ls_venv)/bin/python

    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)
    if [[ ! -e $dir/$_ls_marker && -n $(ls -A "$dir") ]]; then
        _ls_die "$dir exists and is not empty"
    fi
    if [[ -f $dir/pid ]] && _ls_is_ours "$(head -n 1 "$dir/pid")" "$dir"; then
        _ls_die "a localstripe is already running for $dir"
    fi
    : >"$dir/$_ls_marker"
    rm -f "$dir/port" "$dir/pid"
    : >"$dir/log"

    deadline=$((SECONDS + 30))

    # Detached from our stdout: `start` runs inside $(...), which would
    # otherwise wait for the server to exit.
    "$py" -u "$_ls_root/scripts/localstripe_serve.py" "--dir=$dir" \
        </dev/null >>"$dir/log" 2>&1 &
    pid=$!
    echo "$pid" >"$dir/pid"

    fail() {
        _ls_log "$*"
        _ls_tail_log "$dir/log"
        _ls_kill "$pid" "$dir"
        exit 1
    }

    # The launcher writes DIR/port once its socket is bound.
    until [[ -s $dir/port ]]; do
        kill -0 "$pid" 2>/dev/null || fail "localstripe exited during startup"
        ((SECONDS < deadline)) || fail "localstripe did not bind a port within 30 s"
        sleep 0.1
    done
    port=$(head -n 1 "$dir/port")
    [[ $port =~ ^[0-9]+$ ]] || fail "bad port in $dir/port: $port"
    url="http://127.0.0.1:$port"

    # Then wait until it answers an authenticated, side-effect-free request.
    if ! "$py" - "$url" "$((deadline - SECONDS))" "$pid" >>"$dir/log" 2>&1 <<'EOF'; then
import json, os, sys, time, urllib.request
url, budget, pid = sys.argv[1], max(int(sys.argv[2]), 1), int(sys.argv[3])
deadline = time.monotonic() + budget
err = None
req = urllib.request.Request(url + "/v1/customers?limit=1",
                             headers={"Authorization": "Bearer sk_test_ready"})
while True:
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            if r.status == 200 and json.load(r).get("object") == "list":
                sys.exit(0)
    except Exception as e:
        err = e
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        print("readiness check: server exited", file=sys.stderr)
        sys.exit(1)
    if time.monotonic() > deadline:
        print("readiness check: no answer: %r" % (err,), file=sys.stderr)
        sys.exit(1)
    time.sleep(0.05)
EOF
        fail "localstripe in $dir is not answering on $url"
    fi

    echo "$url"
)

localstripe_stop() (
    set -euo pipefail
    dir=${1:-}
    [[ -n $dir ]] || _ls_die "usage: localstripe.sh stop DIR"
    [[ -e $dir ]] || exit 0
    [[ -d $dir ]] || _ls_die "$dir is not a directory"
    if [[ ! -e $dir/$_ls_marker ]]; then
        # Only ever delete what `start` created (or an empty dir).
        if [[ -z $(ls -A "$dir") ]]; then
            rmdir "$dir"
            exit 0
        fi
        _ls_die "$dir was not created by localstripe.sh start; not touching it"
    fi
    dir=$(cd "$dir" && pwd -P)
    if [[ -f $dir/pid ]]; then
        _ls_kill "$(head -n 1 "$dir/pid" 2>/dev/null || true)" "$dir"
    fi
    rm -rf "$dir"
)

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    case "${1:-}" in
    start)
        [[ $# -eq 2 ]] || _ls_die "usage: $0 start DIR"
        localstripe_start "$2"
        ;;
    stop)
        [[ $# -eq 2 ]] || _ls_die "usage: $0 stop DIR"
        localstripe_stop "$2"
        ;;
    install)
        localstripe_install
        ;;
    *)
        echo "usage: $0 start DIR | stop DIR | install" >&2
        exit 2
        ;;
    esac
fi
