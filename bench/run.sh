#!/usr/bin/env bash
# kessai's benchmark harness: one command (see bench/README.md).
#
#   bench/run.sh [--smoke] [--duration S] [--backends sqlite,postgres]
#                [--standins nginx,emulator] [--users N] [--max-pool N]
#                [--readiness-runs N] [--out FILE] [--profile] [--keep]
#                [--dev-build] [--scenarios intent,intent-create,webhook,orders]
#
# Builds kessai (release), measures the floors (the Stripe stand-ins alone and
# through kessai's Stripe client, the database alone), then for each backend
# starts a fresh kessai, prepares users and orders through the public API and
# drives the scenarios with wrk, sampling the server's RSS. Prints the table
# and writes bench/results/<UTC time>.json (--smoke: a temporary file).
#
#   --smoke        every scenario and floor for about 2 s, 20 users: checks
#                  that the harness works end to end (for CI), exits non-zero
#                  on any failure of correctness
#   --duration S   seconds per scenario and per floor (default 10)
#   --backends     which databases (default sqlite,postgres)
#   --standins     which Stripe stand-ins (default nginx,emulator; the
#                  emulator pass runs the intent scenarios on SQLite only)
#   --profile      also record a CPU profile of kessai (perf, 997 Hz) during
#                  each scenario: <results>-profiles/*.txt (by thread, by
#                  library, top symbols); perturbs the figures a little
#   --keep         keep the work directory (logs, databases, request files)
#   --scenarios    which scenarios to drive (default all; the floors and
#                  the preparation run regardless)
#   --dev-build    use the unoptimised (dev profile) build the tests already
#                  made: for --smoke in CI only, the figures mean nothing
#
# Installs wrk and nginx with apt-get when missing (sudo when not root), and
# PostgreSQL through scripts/pg-throwaway.sh. Stops everything it started.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

smoke=0
duration=
backends=sqlite,postgres
standins=nginx,emulator
users=
max_pool=200000
readiness_runs=
out=
keep=0
profile=0
build_profile=release
scenarios=intent,intent-create,webhook,orders

usage() {
    sed -n '2,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

while [[ $# -gt 0 ]]; do
    case $1 in
    --smoke) smoke=1 ;;
    --duration) duration=${2:?}; shift ;;
    --backends) backends=${2:?}; shift ;;
    --standins) standins=${2:?}; shift ;;
    --users) users=${2:?}; shift ;;
    --max-pool) max_pool=${2:?}; shift ;;
    --readiness-runs) readiness_runs=${2:?}; shift ;;
    --out) out=${2:?}; shift ;;
    --keep) keep=1 ;;
    --profile) profile=1 ;;
    --dev-build) build_profile=dev ;;
    --scenarios) scenarios=${2:?}; shift ;;
    -h | --help) usage ;;
    *) echo "run.sh: unknown argument $1" >&2; usage ;;
    esac
    shift
done

if ((smoke)); then
    duration=${duration:-2}
    users=${users:-20}
    readiness_runs=${readiness_runs:-3}
else
    duration=${duration:-10}
    users=${users:-300}
    readiness_runs=${readiness_runs:-7}
fi
if ! [[ $duration =~ ^[0-9]+$ ]] || ((duration < 1 || duration > 200)); then
    # Webhooks are signed before each scenario and must stay within
    # kessai's 300 s tolerance until the scenario ends.
    echo "run.sh: --duration must be 1..200 seconds" >&2
    exit 2
fi
if ! [[ $users =~ ^[0-9]+$ ]] || ((users < 2)); then
    echo "run.sh: --users must be at least 2" >&2
    exit 2
fi

has() { [[ ",$1," == *",$2,"* ]]; }
log() { printf '\n== %s\n' "$*" >&2; }
die() { echo "run.sh: error: $*" >&2; exit 1; }

started_at=$(date +%s)

# ---------------------------------------------------------------- tools
sudo=
if [[ $(id -u) -ne 0 ]]; then
    sudo=sudo
fi
export PATH=$PATH:/usr/sbin:/sbin
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
if has "$standins" nginx && ! command -v nginx >/dev/null 2>&1; then
    missing+=(nginx)
fi
if ((${#missing[@]})); then
    log "installing ${missing[*]} (apt-get)"
    command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install ${missing[*]}"
    # Keep the packages' postinst from starting Debian's own nginx service.
    policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
    fi
    $sudo apt-get update -q >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
    if [[ -n $policy ]]; then
        $sudo rm -f "$policy"
    fi
fi

if ((profile)) && ! command -v perf >/dev/null 2>&1; then
    die "--profile needs perf (Debian: apt-get install linux-perf)"
fi

log "building kessai and kessai-bench ($build_profile)"
(cd "$root" && cargo build --profile "$build_profile" -q -p kessai -p kessai-bench)
target_dir=${CARGO_TARGET_DIR:-$root/target}
[[ $target_dir = /* ]] || target_dir=$root/$target_dir
profile_dir=$([[ $build_profile == dev ]] && echo debug || echo release)
kessai=$target_dir/$profile_dir/kessai
bench=$target_dir/$profile_dir/kessai-bench
script=$here/wrk/scenario.lua

# ---------------------------------------------------------------- cleanup
work=$(mktemp -d "${TMPDIR:-/tmp}/kessai-bench.XXXXXX")
chmod 755 "$work"
records=$work/records.jsonl
: >"$records"
if [[ -z $out ]]; then
    if ((smoke)); then
        out=$work/results.json
    else
        mkdir -p "$here/results"
        out=$here/results/$(date -u +%Y%m%dT%H%M%SZ).json
    fi
fi
profile_dir=${out%.json}-profiles
pids=()
pg_dirs=()

stop_pid() { # pid: SIGTERM, wait up to 15 s, then SIGKILL
    local pid=$1
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

forget_pid() {
    local keep_pids=() p
    for p in "${pids[@]}"; do
        [[ $p == "$1" ]] || keep_pids+=("$p")
    done
    pids=("${keep_pids[@]}")
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${pids[@]}"; do
        stop_pid "$pid"
    done
    for dir in "${pg_dirs[@]}"; do
        "$root/scripts/pg-throwaway.sh" stop "$dir" >/dev/null 2>&1 || true
    done
    if ((rc != 0 || keep)); then
        echo "run.sh: work directory kept: $work" >&2
    else
        rm -rf "$work"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------- helpers
free_port() { "$bench" free-port; }

# http_get PORT PATH: prints the whole response (bash's /dev/tcp, no curl).
http_get() {
    local response
    exec 3<>"/dev/tcp/127.0.0.1/$1" || return 1
    printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3
    response=$(timeout 5 cat <&3) || true
    exec 3>&-
    printf '%s' "$response"
}

wait_http() { # port path pid what
    for _ in $(seq 1 600); do
        if http_get "$1" "$2" 2>/dev/null | head -n 1 | grep -q ' 200 '; then
            return 0
        fi
        kill -0 "$3" 2>/dev/null || die "$4 exited during start (see $work)"
        sleep 0.05
    done
    die "$4 did not answer 200 at $2 within 30 s (see $work)"
}

json_field() { # name: a number field of the JSON object on stdin
    grep -o "\"$1\":[0-9.]*" | head -n 1 | cut -d: -f2
}

webhook_secret=whsec_bench_$(date +%s)_secret
auth_secret="bench-auth-secret-0123456789abcdef-0123456789"
stripe_key=sk_test_bench

# ---------------------------------------------------------------- stand-ins
nginx_pid=
nginx_port=
nginx_dir=$work/nginx
emulator_pid=
emulator_port=

start_nginx() { # amount
    nginx_port=$(free_port)
    bash "$here/standin/nginx.sh" "$nginx_dir" "$nginx_port" "$1" jpy
    nginx -t -q -p "$nginx_dir" -c "$nginx_dir/nginx.conf" -e "$nginx_dir/error.log" >&2
    nginx -p "$nginx_dir" -c "$nginx_dir/nginx.conf" -e "$nginx_dir/error.log" >>"$nginx_dir/stdout.log" 2>&1 &
    nginx_pid=$!
    pids+=("$nginx_pid")
    wait_http "$nginx_port" /v1/payment_intents/pi_ready "$nginx_pid" nginx
}

# The stand-in cannot read bodies: every PaymentIntent it returns has the
# amount of the configuration, rewritten here once the order total is known.
nginx_amount() { # amount
    bash "$here/standin/nginx.sh" "$nginx_dir" "$nginx_port" "$1" jpy
    kill -HUP "$nginx_pid"
    for _ in $(seq 1 100); do
        if http_get "$nginx_port" /v1/payment_intents/pi_amount 2>/dev/null | grep -q "\"amount\":$1,"; then
            # Let the old worker close kessai's idle keep-alive connections.
            sleep 0.5
            return 0
        fi
        sleep 0.05
    done
    die "nginx did not take the new amount"
}

start_emulator() {
    emulator_port=$(free_port)
    "$kessai" stripe-emulator --bind "127.0.0.1:$emulator_port" --secret-key "$stripe_key" \
        >"$work/emulator.log" 2>&1 &
    emulator_pid=$!
    pids+=("$emulator_pid")
    # Any answer will do (the emulator wants a key on /v1).
    for _ in $(seq 1 600); do
        if http_get "$emulator_port" /v1/customers/cus_ready 2>/dev/null | head -n 1 | grep -q '^HTTP/1.1'; then
            return 0
        fi
        kill -0 "$emulator_pid" 2>/dev/null || die "the emulator exited during start (see $work/emulator.log)"
        sleep 0.05
    done
    die "the emulator did not start"
}

standin_floors() { # name port
    local name=$1 port=$2 conns op
    log "floors: the $name stand-in alone (wrk) and through kessai's Stripe client"
    for conns in 16 64; do
        "$bench" wrk --url "http://127.0.0.1:$port" --kind standin --conns "$conns" \
            --duration "$duration" --script "$script" --stripe-key "$stripe_key" \
            --floor standin-wrk --record "$records" --label "standin=$name" 2>>"$work/wrk.log" >/dev/null
        for op in create retrieve; do
            "$bench" floor-stripe --base "http://127.0.0.1:$port" --key "$stripe_key" --op "$op" \
                --concurrency "$conns" --duration "$duration" \
                --record "$records" --label "standin=$name" >/dev/null
        done
    done
}

# ---------------------------------------------------------------- database
declare -A db_floor=()

# Sets db_url to a fresh database for kessai (PostgreSQL: started here).
# Not a $(…) function: it records the server it starts in pg_dirs.
db_url=
fresh_db() { # backend
    case $1 in
    sqlite)
        mkdir -p "$work/sqlite"
        rm -f "$work/sqlite/kessai.db"*
        db_url="sqlite://$work/sqlite/kessai.db"
        ;;
    postgres)
        local dir
        dir=$(mktemp -d "${TMPDIR:-/tmp}/kessai-bench-pg.XXXXXX")
        rmdir "$dir"
        pg_dirs+=("$dir")
        db_url=$("$root/scripts/pg-throwaway.sh" start "$dir")
        # pg-throwaway tunes for tests (fsync=off, ...); kessai in production
        # runs on a durable server: give it PostgreSQL's defaults back.
        "$bench" pg-durable --url "$db_url" >&2
        # shellcheck source=scripts/pg-throwaway.sh disable=SC1091
        pg_version=$("$(. "$root/scripts/pg-throwaway.sh" && _pgt_bin)/postgres" --version)
        ;;
    esac
}

stop_postgres() {
    local dir keep_dirs=()
    for dir in "${pg_dirs[@]}"; do
        "$root/scripts/pg-throwaway.sh" stop "$dir" >/dev/null 2>&1 || keep_dirs+=("$dir")
    done
    pg_dirs=("${keep_dirs[@]}")
}

db_floors() { # backend url
    local backend=$1 url=$2 conns floor_url rps
    log "floors: $backend alone (single-row insert transactions)"
    for conns in 16 64; do
        floor_url=$url
        if [[ $backend == sqlite ]]; then
            floor_url="sqlite://$work/sqlite/floor.db"
        fi
        # Twice: on Tokio's default two workers and on one. With one, the
        # client does not bounce between threads, and SQLite committed 1.7
        # times as often in one run: the floor is the better of the two
        # (the report takes the best too).
        local best=0 workers
        for workers in 2 1; do
            rps=$(TOKIO_WORKER_THREADS=$workers "$bench" floor-db --url "$floor_url" \
                --concurrency "$conns" --duration "$duration" --record "$records" \
                --label "backend=$backend" --label "runtime=$workers Tokio worker(s)" | json_field rps)
            rps=${rps%.*}
            ((rps > best)) && best=$rps
        done
        db_floor[$backend-$conns]=$best
    done
}

# ---------------------------------------------------------------- kessai
kessai_pid=
kessai_port=
kessai_db=

start_kessai() { # label db-url stripe-base
    kessai_port=$(free_port)
    kessai_db=$2
    env DATABASE_URL="$2" \
        BIND_ADDR="127.0.0.1:$kessai_port" \
        STRIPE_SECRET_KEY="$stripe_key" \
        STRIPE_API_BASE="$3" \
        STRIPE_WEBHOOK_SECRET="$webhook_secret" \
        AUTH_SECRET="$auth_secret" \
        AUTH_RATE_LIMIT_PER_ADDRESS=0 \
        AUTH_RATE_LIMIT_PER_EMAIL=0 \
        RECONCILE_INTERVAL_SECONDS=0 \
        RUST_LOG="${BENCH_RUST_LOG:-info,sqlx=warn}" \
        "$kessai" serve >"$work/kessai-$1.log" 2>&1 &
    kessai_pid=$!
    pids+=("$kessai_pid")
    wait_http "$kessai_port" /readyz "$kessai_pid" kessai
}

stop_kessai() {
    stop_pid "$kessai_pid"
    forget_pid "$kessai_pid"
}

scenario() { # backend standin scenario kind file conns [tag]
    local backend=$1 standin=$2 name=$3 kind=$4 file=$5 conns=$6 tag=${7:-}
    local labels=(--label "backend=$backend" --label "standin=$standin" --label "scenario=$name")
    [[ -n $tag ]] && labels+=(--label "tag=$tag")
    # Each scenario measures itself, not the cleanup of the one before
    # (on PostgreSQL: VACUUM ANALYZE, CHECKPOINT, autovacuum finished).
    "$bench" settle --db "$kessai_db" --records "$records" "${labels[@]}" \
        --label "conns=$conns" >/dev/null
    # Pools are used once: each webhook event is delivered once, each
    # order's first intent call is a creation.
    if [[ $file == */pool-* || $file == */events-* ]]; then
        labels+=(--once)
    fi
    local perf_pid='' perf_data=''
    if ((profile)); then
        mkdir -p "$profile_dir"
        perf_data=$profile_dir/$backend-$standin-$name-c$conns.data
        perf record -F 997 -p "$kessai_pid" -o "$perf_data" -- sleep "$duration" >/dev/null 2>&1 &
        perf_pid=$!
    fi
    local result
    result=$("$bench" wrk --url "http://127.0.0.1:$kessai_port" --kind "$kind" --requests "$file" \
        --conns "$conns" --duration "$duration" --script "$script" --pid "$kessai_pid" \
        --record "$records" "${labels[@]}" 2>>"$work/wrk.log")
    local bound=''
    if [[ $(json_field exhausted <<<"$result") != 0 ]]; then
        bound='>='
    fi
    printf '   %-9s %-8s %-14s c%-3s %10s req/s  p99 %7s ms  non-2xx %s\n' "$backend" "$standin" "$name" \
        "$conns" "$bound$(json_field rps <<<"$result")" "$(json_field p99_ms <<<"$result")" \
        "$(json_field non2xx <<<"$result")" >&2
    if [[ -n $perf_pid ]]; then
        wait "$perf_pid" || true
        perf_summary "$perf_data" >"${perf_data%.data}.txt"
        rm -f "$perf_data" "$perf_data.old"
    fi
}

perf_summary() { # perf.data
    local how
    for how in comm dso dso,sym; do
        echo "# kessai's CPU samples by ${how/comm/thread}"
        perf report -i "$1" --stdio --no-children --sort "$how" --percent-limit 0.5 2>/dev/null |
            grep -v '^#' | grep -v '^$' | head -n 40
        echo
    done
}

# Orders a pool needs. A pool covers the scenario at the rate its target
# asks for (webhooks: 70 % of the database floor) with a margin, so a pool
# that runs out means the target was met (the table then shows the rate as a
# lower bound). Intent creation writes three times per request: its pools
# cover 40 % of the database floor. --smoke: small fixed pools.
pool_size() { # floor-rps share
    local n
    if ((smoke)); then
        echo 1500
        return
    fi
    n=$(awk -v f="$1" -v d="$duration" -v s="$2" 'BEGIN { printf "%d", f * d * s + 200 }')
    ((n > max_pool)) && n=$max_pool
    echo "$n"
}

# One kessai, fresh, on one backend with one stand-in, through its scenarios.
pass() { # backend standin stripe-base full(1: all scenarios, 0: intent only)
    local backend=$1 standin=$2 base=$3 full=$4
    log "pass: kessai on $backend, Stripe stand-in $standin"
    fresh_db "$backend"
    local url=$db_url
    if [[ -z ${db_floor[$backend-16]:-} ]]; then
        db_floors "$backend" "$url"
    fi
    start_kessai "$backend-$standin" "$url" "$base"

    local pools=(--pool "create16=$(pool_size "${db_floor[$backend-16]}" 0.4)"
        --pool "create64=$(pool_size "${db_floor[$backend-64]}" 0.4)")
    if ((full)); then
        pools+=(--pool "webhook16=$(pool_size "${db_floor[$backend-16]}" 0.84)"
            --pool "webhook64=$(pool_size "${db_floor[$backend-64]}" 0.84)")
    fi
    local data=$work/data-$backend-$standin
    log "preparing $users users with one order each, and the pools (${pools[*]}), through the API"
    local prepared amount
    prepared=$("$bench" prepare --base "http://127.0.0.1:$kessai_port" --users "$users" \
        --out-dir "$data" "${pools[@]}" --pid "$kessai_pid" \
        --record "$records" --label "backend=$backend" --label "standin=$standin")
    echo "$prepared" >&2
    amount=$(json_field amount <<<"$prepared")
    [[ -n $amount ]] || die "prepare printed no amount"
    if [[ $standin == nginx ]]; then
        nginx_amount "$amount"
    fi
    if ((full)) && has "$scenarios" webhook; then
        # A payment's webhook follows its checkout: each order of the
        # webhook pools first gets its PaymentIntent through the API, and
        # its event then names that intent.
        local pool
        for pool in webhook16 webhook64; do
            log "PaymentIntents for the $pool pool, through the API"
            "$bench" warm --base "http://127.0.0.1:$kessai_port" --file "$data/pool-$pool.tsv" \
                --concurrency 16 --intents-out "$data/intents-$pool.tsv" >&2
        done
    fi
    # The scenarios get a process of their own (same database; the tokens
    # stay valid: AUTH_SECRET is fixed): its RSS is then what the scenarios
    # cost, not what the registrations' argon2 hashing left behind.
    stop_kessai
    start_kessai "$backend-$standin-scenarios" "$url" "$base"
    "$bench" warm --base "http://127.0.0.1:$kessai_port" --file "$data/users.tsv" --concurrency 16 \
        --record "$records" --label "backend=$backend" --label "standin=$standin" >&2

    log "scenarios ($duration s each)"
    if has "$scenarios" intent; then
        scenario "$backend" "$standin" intent intent "$data/users.tsv" 16
        scenario "$backend" "$standin" intent intent "$data/users.tsv" 64
    fi
    if has "$scenarios" intent-create; then
        scenario "$backend" "$standin" intent-create intent "$data/pool-create16.tsv" 16
        scenario "$backend" "$standin" intent-create intent "$data/pool-create64.tsv" 64
    fi
    if ((full)) && has "$scenarios" webhook; then
        local conns tag
        for conns in 16 64; do
            tag=${backend:0:1}$conns
            "$bench" sign-webhooks --secret "$webhook_secret" --pool "$data/pool-webhook$conns.tsv" \
                --intents "$data/intents-webhook$conns.tsv" --amount "$amount" --tag "$tag" \
                --out "$data/events-$conns.tsv" >/dev/null
            scenario "$backend" "$standin" webhook webhook "$data/events-$conns.tsv" "$conns" "$tag"
            "$bench" check-webhooks --db "$kessai_db" --tag "$tag" --records "$records" \
                --label "backend=$backend" --label "standin=$standin" >/dev/null
        done
    fi
    if ((full)) && has "$scenarios" orders; then
        scenario "$backend" "$standin" orders orders "$data/users.tsv" 64
    fi
    stop_kessai
    if [[ $backend == postgres ]]; then
        stop_postgres
    fi
}

# ---------------------------------------------------------------- the run
pg_version=
{
    echo "work directory: $work"
    echo "mode: $([[ $smoke == 1 ]] && echo smoke || echo full), $duration s per scenario, $users users"
} >&2

if has "$standins" nginx; then
    start_nginx 0
    standin_floors nginx "$nginx_port"
fi
if has "$standins" emulator; then
    start_emulator
    standin_floors emulator "$emulator_port"
fi

# The stand-in kessai talks to in the main passes.
if has "$standins" nginx; then
    main_standin=nginx main_base="http://127.0.0.1:$nginx_port"
else
    main_standin=emulator main_base="http://127.0.0.1:$emulator_port"
fi

if has "$backends" sqlite; then
    log "ready to serve: $readiness_runs fresh starts on SQLite"
    "$bench" readiness --bin "$kessai" --runs "$readiness_runs" --dir "$work/readiness" \
        --env "STRIPE_SECRET_KEY=$stripe_key" --env "STRIPE_API_BASE=$main_base" \
        --env "STRIPE_WEBHOOK_SECRET=$webhook_secret" --env "AUTH_SECRET=$auth_secret" \
        --env "RECONCILE_INTERVAL_SECONDS=0" \
        --record "$records" --label backend=sqlite >&2
fi

for backend in sqlite postgres; do
    has "$backends" "$backend" || continue
    pass "$backend" "$main_standin" "$main_base" 1
done
if has "$standins" emulator && has "$standins" nginx && has "$backends" sqlite; then
    pass sqlite emulator "http://127.0.0.1:$emulator_port" 0
fi

# ---------------------------------------------------------------- report
notes=(
    --note "mode=$([[ $smoke == 1 ]] && echo smoke || echo full)"
    --note "duration_s=$duration"
    --note "users=$users"
    --note "kessai=$(git -C "$root" describe --always --dirty 2>/dev/null || echo unknown)"
    --note "wrk=$(wrk -v 2>&1 | head -n 1 | awk '{print $2}') (1 thread)"
    --note "wall_s=$(($(date +%s) - started_at))"
)
if has "$standins" nginx; then
    notes+=(--note "nginx=$(nginx -v 2>&1 | sed 's/.*nginx\///') (1 worker, return from config)")
fi
if [[ -n $pg_version ]]; then
    notes+=(--note "postgres=$pg_version")
fi
log "results"
"$bench" report --records "$records" --out "$out" "${notes[@]}"
if ((profile)); then
    echo "profiles: $profile_dir" >&2
fi
if ((smoke)) && ((keep == 0)); then
    echo "(smoke run: results are not kept; --out FILE or --keep to keep them)" >&2
fi
