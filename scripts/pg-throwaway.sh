#!/usr/bin/env bash
# Throwaway PostgreSQL server for tests.
#
#   scripts/pg-throwaway.sh start DIR   # prints postgres://postgres@127.0.0.1:PORT/postgres
#   scripts/pg-throwaway.sh stop DIR    # stops the server and removes DIR (idempotent)
#   scripts/pg-throwaway.sh install     # installs the PostgreSQL server if missing
#
# Can also be sourced; it then defines pg_throwaway_start, pg_throwaway_stop and
# pg_throwaway_install (each runs in a subshell, so the caller's shell options
# are left alone).
#
# The server is tuned for speed, not durability (fsync=off, ...), listens on
# 127.0.0.1 only on a free port picked at run time, puts its unix socket in DIR
# and logs to DIR/log. PostgreSQL refuses to run as root, so when run as root
# the server runs as a dedicated system user (KESSAI_PG_USER, default
# kessai-pg), created if missing. Otherwise it runs as the current user.
#
# Environment:
#   PG_BIN          directory with initdb/pg_ctl/postgres
#                   (default /usr/lib/postgresql/15/bin)
#   KESSAI_PG_USER  system user used when running as root (default kessai-pg)

_pgt_marker=.kessai-pg-throwaway

_pgt_die() {
    echo "pg-throwaway: error: $*" >&2
    exit 1
}

_pgt_log() {
    echo "pg-throwaway: $*" >&2
}

_pgt_bin() {
    if [[ -n "${PG_BIN:-}" ]]; then
        echo "$PG_BIN"
        return
    fi
    local d=/usr/lib/postgresql/15/bin
    if [[ ! -x $d/postgres ]]; then
        # Whatever major version the `postgresql` package brought in.
        local c
        for c in /usr/lib/postgresql/*/bin; do
            [[ -x $c/postgres ]] && d=$c
        done
    fi
    echo "$d"
}

# Run a command as the server user ($_pgt_user, empty = current user).
_pgt_as() {
    if [[ -n "$_pgt_user" ]]; then
        runuser -u "$_pgt_user" -- "$@"
    else
        "$@"
    fi
}

_pgt_free_port() {
    if command -v python3 >/dev/null 2>&1; then
        python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()' && return
    fi
    # Fallback: a random high port.
    echo $((20000 + RANDOM % 40000))
}

_pgt_tail_log() {
    local dir=$1
    if [[ -f $dir/log ]]; then
        echo "---- last lines of $dir/log ----" >&2
        tail -n 30 "$dir/log" >&2
        echo "----" >&2
    fi
}

pg_throwaway_install() (
    set -euo pipefail
    bin=$(_pgt_bin)
    [[ -x $bin/postgres ]] && exit 0

    _pgt_log "PostgreSQL server not found in $bin, installing it with apt-get"
    if [[ $(id -u) -ne 0 ]]; then
        _pgt_die "not root, cannot apt-get install postgresql-15; install it or set PG_BIN"
    fi
    command -v apt-get >/dev/null 2>&1 || _pgt_die "apt-get not available; install PostgreSQL 15 or set PG_BIN"
    export DEBIAN_FRONTEND=noninteractive

    # Keep the package's postinst from starting the distribution's own
    # cluster service: we only want the binaries.
    policy=/usr/sbin/policy-rc.d
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        trap 'rm -f "$policy"' EXIT
    fi

    {
        apt-get update -q &&
            { apt-get install -y -q --no-install-recommends postgresql-15 ||
                apt-get install -y -q --no-install-recommends postgresql; }
    } >&2 || _pgt_die "apt-get install of the PostgreSQL server failed"

    bin=$(_pgt_bin)
    [[ -x $bin/postgres ]] || _pgt_die "PostgreSQL installed but $bin/postgres is still missing"
)

pg_throwaway_start() (
    set -euo pipefail
    dir=${1:-}
    [[ -n $dir ]] || _pgt_die "usage: pg-throwaway.sh start DIR"

    pg_throwaway_install
    bin=$(_pgt_bin)

    _pgt_user=
    if [[ $(id -u) -eq 0 ]]; then
        _pgt_user=${KESSAI_PG_USER:-kessai-pg}
        if ! id -u "$_pgt_user" >/dev/null 2>&1; then
            # Tolerate a concurrent run creating the same user.
            useradd --system --no-create-home --home-dir /nonexistent \
                --shell /usr/sbin/nologin --user-group "$_pgt_user" >&2 ||
                id -u "$_pgt_user" >/dev/null 2>&1 ||
                _pgt_die "could not create system user $_pgt_user"
        fi
    fi

    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd -P)
    if [[ ! -e $dir/$_pgt_marker && -n $(ls -A "$dir") ]]; then
        _pgt_die "$dir exists and is not empty"
    fi
    : >"$dir/$_pgt_marker"
    : >"$dir/log"
    if [[ -n $_pgt_user ]]; then
        chown -R "$_pgt_user:" "$dir"
    fi
    chmod 700 "$dir"
    if ! _pgt_as test -w "$dir" -a -x "$dir"; then
        _pgt_die "${_pgt_user:-$(id -un)} cannot write to $dir (is a parent directory closed to it? try a dir under /tmp)"
    fi

    # The socket path must fit in sun_path (107 bytes).
    if ((${#dir} + 20 > 107)); then
        _pgt_die "DIR path too long for a unix socket: $dir"
    fi

    # postgres/initdb chdir around; never leave them in a directory they
    # cannot read (e.g. /root).
    cd "$dir"

    if ! _pgt_as "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync \
        --encoding=UTF8 --locale=C >>"$dir/log" 2>&1; then
        _pgt_log "initdb failed"
        _pgt_tail_log "$dir"
        exit 1
    fi

    cat >>"$dir/data/postgresql.conf" <<EOF

# --- pg-throwaway.sh: throwaway test server, no durability ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
EOF

    # The port is picked free but may be taken before postgres binds it:
    # retry a few times on "Address already in use".
    started=
    for attempt in 1 2 3 4 5; do
        port=$(_pgt_free_port)
        echo "$port" >"$dir/port"
        logsize=$(stat -c %s "$dir/log")
        # Server and pg_ctl both append to DIR/log; that is intended.
        # shellcheck disable=SC2094
        if _pgt_as "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w -t 30 \
            -o "-p $port" start >>"$dir/log" 2>&1; then
            started=1
            break
        fi
        if ! tail -c "+$((logsize + 1))" "$dir/log" | grep -q 'Address already in use'; then
            break
        fi
        if [[ -f $dir/data/postmaster.pid ]]; then
            _pgt_as "$bin/pg_ctl" -D "$dir/data" -m immediate stop >>"$dir/log" 2>&1 || true
        fi
        if ((attempt < 5)); then
            _pgt_log "port $port was taken, retrying"
        fi
    done
    if [[ -z $started ]]; then
        _pgt_log "could not start PostgreSQL in $dir"
        _pgt_tail_log "$dir"
        _pgt_as "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
        exit 1
    fi

    # pg_ctl -w already waits; double check over TCP (bounded, ~30 s).
    ready=
    for _ in $(seq 1 60); do
        if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -t 1 >/dev/null 2>&1; then
            ready=1
            break
        fi
        sleep 0.5
    done
    if [[ -z $ready ]]; then
        _pgt_log "PostgreSQL in $dir started but is not accepting connections on 127.0.0.1:$port"
        _pgt_tail_log "$dir"
        _pgt_as "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
        exit 1
    fi

    echo "postgres://postgres@127.0.0.1:$port/postgres"
)

pg_throwaway_stop() (
    set -euo pipefail
    dir=${1:-}
    [[ -n $dir ]] || _pgt_die "usage: pg-throwaway.sh stop DIR"
    [[ -e $dir ]] || exit 0
    [[ -d $dir ]] || _pgt_die "$dir is not a directory"
    if [[ ! -e $dir/$_pgt_marker ]]; then
        # Only ever delete what `start` created (or an empty dir).
        if [[ -z $(ls -A "$dir") ]]; then
            rmdir "$dir"
            exit 0
        fi
        _pgt_die "$dir was not created by pg-throwaway.sh start; not touching it"
    fi
    dir=$(cd "$dir" && pwd -P)
    cd "$dir"

    if [[ -f $dir/data/postmaster.pid ]]; then
        bin=$(_pgt_bin)
        _pgt_user=
        if [[ $(id -u) -eq 0 ]]; then
            owner=$(stat -c %U "$dir/data")
            [[ $owner == root ]] || _pgt_user=$owner
        fi
        if ! _pgt_as "$bin/pg_ctl" -D "$dir/data" -m fast -w -t 30 stop >/dev/null 2>&1; then
            _pgt_as "$bin/pg_ctl" -D "$dir/data" -m immediate -w -t 10 stop >/dev/null 2>&1 || true
        fi
        # Last resort: kill exactly the postmaster of this data dir.
        if [[ -f $dir/data/postmaster.pid ]]; then
            pid=$(head -n 1 "$dir/data/postmaster.pid" 2>/dev/null || true)
            if [[ $pid =~ ^[0-9]+$ ]] && [[ $(readlink "/proc/$pid/cwd" 2>/dev/null || true) == "$dir/data" ]]; then
                kill -KILL "$pid" 2>/dev/null || true
                for _ in $(seq 1 50); do
                    kill -0 "$pid" 2>/dev/null || break
                    sleep 0.1
                done
            fi
        fi
    fi
    rm -rf "$dir"
)

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
    set -euo pipefail
    case "${1:-}" in
    start)
        [[ $# -eq 2 ]] || _pgt_die "usage: $0 start DIR"
        pg_throwaway_start "$2"
        ;;
    stop)
        [[ $# -eq 2 ]] || _pgt_die "usage: $0 stop DIR"
        pg_throwaway_stop "$2"
        ;;
    install)
        pg_throwaway_install
        ;;
    *)
        echo "usage: $0 start DIR | stop DIR | install" >&2
        exit 2
        ;;
    esac
fi
