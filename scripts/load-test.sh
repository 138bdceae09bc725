#!/usr/bin/env bash
# HTTP load report (`just load`): oha at 500, 1,000, 5,000 and 10,000
# connections against POST /api/v1/events and GET /api/v1/stats/averages,
# on a private nats-server and a fresh SurrealKV store in a temporary
# directory; writes docs/load-test.md and docs/load-test.svg.
#
# Needs: the release binary (cargo build --release --workspace --bins --benches), nats-server,
# oha (cargo install oha --locked), curl, ss (iproute2), python3.
#
# Environment (all optional):
#   LOAD_BIN       the vigia binary     (default $CARGO_TARGET_DIR/release/vigia)
#   LOAD_LEVELS     connection levels    (default "500 1000 5000 10000")
#   LOAD_DURATION   per level            (default 20s)
#   LOAD_ENDPOINTS  which, in order      (default "get post")
#   LOAD_OUT        the report           (default docs/load-test.md; the chart goes beside it)
#   LOAD_TIMEOUT    per request          (default 30s; a request past it counts as an error)
#
# Only loopback addresses are used; every request loop is bounded by
# LOAD_DURATION, and everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/vigia-target}"
BIN="${LOAD_BIN:-$TARGET_DIR/release/vigia}"
LEVELS="${LOAD_LEVELS:-500 1000 5000 10000}"
DURATION="${LOAD_DURATION:-20s}"
ENDPOINTS="${LOAD_ENDPOINTS:-get post}"
TIMEOUT="${LOAD_TIMEOUT:-30s}"
OUT="${LOAD_OUT:-docs/load-test.md}"
SVG="${OUT%.md}.svg"

die() { echo "load-test: $*" >&2; exit 1; }
command -v oha >/dev/null || die "oha is not installed: cargo install oha --locked (it lands in ~/.cargo/bin; put that on PATH)"
command -v nats-server >/dev/null || die "nats-server is not installed: apt-get install -y nats-server"
command -v ss >/dev/null || die "ss is missing: apt-get install -y iproute2"
command -v curl >/dev/null || die "curl is missing: apt-get install -y curl"
[ -x "$BIN" ] || die "no binary at $BIN: build it with cargo build --release --workspace --bins --benches, or set LOAD_BIN"

# Every connection is a file descriptor in oha and another in Vigia.
max_level=0
for c in $LEVELS; do [ "$c" -gt "$max_level" ] && max_level=$c; done
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge $((max_level + 1024)) ] \
  || die "ulimit -n is $(ulimit -n); $max_level connections need at least $((max_level + 1024)) (raise the hard limit)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
tmp="$(mktemp -d)"
pids=()
# Newest first, so Vigia stops while its nats-server still answers (a Vigia
# whose NATS is gone can wait for it forever while stopping), and each gets
# 30 s before SIGKILL.
cleanup() {
  local i pid
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    pid=${pids[i]}
    kill "$pid" 2>/dev/null || continue
    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$tmp"
}
trap cleanup EXIT

nats_port="$(free_port)"
http_port="$(free_port)"
nats-server -js -a 127.0.0.1 -p "$nats_port" -sd "$tmp/nats" >"$tmp/nats.log" 2>&1 &
pids+=($!)
export VIGIA_NATS__URL="nats://127.0.0.1:$nats_port" VIGIA_NATS__SPAWN=false VIGIA_NATS__DIR="$PWD/nats"
export VIGIA_STORE__URL="surrealkv://$tmp/db" VIGIA_HTTP__LISTEN="127.0.0.1:$http_port" VIGIA_LOG__FILTER=warn
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break; sleep 0.1; done
"$BIN" up --no-sim >"$tmp/vigia.log" 2>&1 &
vigia_pid=$!
pids+=($vigia_pid)
base="http://127.0.0.1:$http_port"
for _ in $(seq 300); do curl -fs "$base/health" >/dev/null && break; sleep 0.2; done
curl -fs "$base/health" >/dev/null || { cat "$tmp/vigia.log" >&2; die "Vigia did not answer at $base/health"; }

counted() { curl -fs "$base/api/v1/counts?prefix=brasil&depth=0" | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])'; }
echo "load-test: seeding 2,000 sensors (20,000 readings) ..."
"$BIN" sim --sensors 2000 --rate 0 --batch 1000 --count 20000 --error-ratio 0 >/dev/null
for _ in $(seq 1200); do [ "$(counted)" -ge 20000 ] && break; sleep 0.5; done
[ "$(counted)" -ge 20000 ] || die "the persister did not store the seed within 10 minutes"
python3 scripts/load-report.py bodies "$tmp/bodies.txt" --lines 2000 --readings 5 --sensors 2000

# The most connections established on the server's port at once, while $1 runs.
peak_connections() {
  local pid=$1 peak=0 n
  while kill -0 "$pid" 2>/dev/null; do
    n=$(ss -Htn state established "( sport = :$http_port )" | wc -l)
    [ "$n" -gt "$peak" ] && peak=$n
    sleep 0.5
  done
  echo "$peak"
}

for endpoint in $ENDPOINTS; do
  for c in $LEVELS; do
    echo "load-test: $endpoint at $c connections for $DURATION ..."
    case $endpoint in
      post) args=(-m POST -T application/json -Z "$tmp/bodies.txt" "$base/api/v1/events") ;;
      get) args=("$base/api/v1/stats/averages?window=24h") ;;
      *) die "unknown endpoint $endpoint (use get, post)" ;;
    esac
    oha -c "$c" -z "$DURATION" -w -t "$TIMEOUT" --no-tui --output-format json -o "$tmp/$endpoint-$c.json" "${args[@]}" &
    oha_pid=$!
    peak_connections "$oha_pid" >"$tmp/$endpoint-$c.conns"
    wait "$oha_pid" || die "oha failed at $c connections"
    kill -0 "$vigia_pid" 2>/dev/null || { tail -50 "$tmp/vigia.log" >&2; die "Vigia died at $endpoint $c"; }
    # Let the server close this level's connections before the next one.
    for _ in $(seq 60); do [ "$(ss -Htn state established "( sport = :$http_port )" | wc -l)" -eq 0 ] && break; sleep 0.5; done
  done
done
# Alerts are logged as warnings by design; the rest, without timestamps, counted by kind.
grep -iE "error|warn" "$tmp/vigia.log" | grep -v "ALERT " | sed -E 's/^[^ ]+ +//' | cut -c1-160 \
  | sort | uniq -c | sort -rn | head -20 >"$tmp/vigia-warnings.txt" || true
if [ -s "$tmp/vigia-warnings.txt" ]; then
  echo "load-test: Vigia logged (counts of each line):" >&2
  cat "$tmp/vigia-warnings.txt" >&2
fi

machine="$(nproc) cores ($(lscpu | sed -n 's/^Model name: *//p' | head -1)), $(free -g | awk '/^Mem:/ {print $2}') GiB"
python3 scripts/load-report.py report "$tmp" --out "$OUT" --svg "$SVG" \
  --meta "date=$(date -u +%F)" \
  --meta "machine=$machine" \
  --meta "vigia=$(git describe --always --dirty 2>/dev/null || echo unknown), $("$BIN" --version)" \
  --meta "binary=\`$BIN\`" \
  --meta "oha=$(oha --version | head -1)" \
  --meta "nats-server=$(nats-server --version)" \
  --meta "duration=$DURATION per level, request timeout $TIMEOUT; levels: $LEVELS" \
  --meta "ulimit -n=$(ulimit -n)" \
  --meta "command=\`just load\` (= \`scripts/load-test.sh\`)"
