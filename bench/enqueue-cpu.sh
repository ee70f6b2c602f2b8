#!/usr/bin/env bash
# Redis CPU per enqueued message (a measurement, not a test): this checkout against another
# revision (default a83d53d, the last before the dedup buckets), the same
# `crates/queue/examples/queue_bench.rs` built against each, run interleaved against one private
# redis-server. For each enqueue phase it prints Redis's time in EVALSHA per job (`INFO
# commandstats`: the script, every command it runs included) and Redis's whole CPU per job
# (`INFO cpu`). Each repetition also runs the Node reference's BullMQ `Queue.add` for 5 s, 64 in
# flight (`../shared/bench/seed-node/bench-queue.js`, copied into WA_BENCH_WORK as the shared
# harness does, `npm ci` once), with the same two figures per add. About a minute per
# repetition and side with the default 100 000 jobs.
#
# Usage: [BENCH_RATE=n] bench/enqueue-cpu.sh [--base REV] [--build-only DIR | --built DIR] [JOBS] [REPS]
#   e.g. BENCH_RATE=100 bench/enqueue-cpu.sh 100000 3   (jobs stamped as if sent at 100/s: see
#   queue_bench.rs; without BENCH_RATE they carry the time they are enqueued)
# --build-only DIR builds both sides' queue_bench into DIR (base, this) and stops; --built DIR
# runs those instead of building, so that the builds need not hold the bench lock:
#   bench/enqueue-cpu.sh --base 68b06ec --build-only /tmp/qb &&
#   flock /tmp/bench.lock bench/enqueue-cpu.sh --base 68b06ec --built /tmp/qb 100000 3
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)
base=a83d53d
if [ "${1:-}" = --base ]; then
  base=$2
  shift 2
fi
build_only= built=
if [ "${1:-}" = --build-only ]; then
  build_only=$2
  shift 2
elif [ "${1:-}" = --built ]; then
  built=$2
  shift 2
fi
jobs=${1:-100000}
reps=${2:-3}
shared=${WA_SHARED:-$repo/../shared}
work=${WA_BENCH_WORK:-${TMPDIR:-/tmp}/wa-bench-work}
seed="$work/seed-node"
if [ ! -d "$seed/node_modules" ]; then
  mkdir -p "$seed"
  (cd "$shared/bench/seed-node" && tar cf - --exclude=node_modules .) | (cd "$seed" && tar xf -)
  (cd "$seed" && npm ci --no-audit --no-fund >/dev/null 2>&1)
fi
dir=$(mktemp -d)
old="$dir/base-tree"
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  git -C "$repo" worktree remove --force "$old" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

# Both builds share this checkout's target directory, so the dependencies compile once. The
# sources of every library crate are touched before each build: the two sides' wa-queue (and
# wa-kind) share one artifact name there, and cargo took the other side's as fresh.
if [ -n "$built" ]; then
  cp "$built/this" "$built/base" "$dir/"
else
  find crates/*/src crates/queue/examples -type f -exec touch {} +
  cargo build --release -q -p wa-queue --example queue_bench
  cp target/release/examples/queue_bench "$dir/this"
  git worktree add -q --detach "$old" "$base"
  cp crates/queue/examples/queue_bench.rs "$old/crates/queue/examples/queue_bench.rs"
  find "$old"/crates/*/src "$old/crates/queue/examples" -type f -exec touch {} +
  CARGO_TARGET_DIR="$repo/target" cargo build --release -q --manifest-path "$old/Cargo.toml" \
    -p wa-queue --example queue_bench
  cp target/release/examples/queue_bench "$dir/base"
  if [ -n "$build_only" ]; then
    mkdir -p "$build_only"
    cp "$dir/this" "$dir/base" "$build_only/"
    exit 0
  fi
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$port" info server | grep -E '^redis_version'
echo "base $(git rev-parse --short "$base"), this $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')"
rc() { redis-cli -p "$port" "$@"; }
# Redis's CPU (us) and EVALSHA's calls and time (us) so far.
counters() {
  local cpu eval
  cpu=$(rc info cpu | tr -d '\r' | awk -F: '/^used_cpu_(sys|user):/ {s += $2} END {printf "%.0f", s * 1e6}')
  eval=$(rc info commandstats | tr -d '\r' | sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),usec=\([0-9]*\),.*/\1 \2/p')
  echo "$cpu ${eval:-0 0}"
}
bullmq() {
  local before after adds
  before=$(counters)
  adds=$(cd "$seed" && REDIS_URL="redis://127.0.0.1:$port" QUEUE_NAME="bq-$rep" DURATION=5 IN_FLIGHT=64 \
    node bench-queue.js | python3 -c 'import json,sys; print(json.loads(sys.stdin.read().splitlines()[-1])["adds"])')
  after=$(counters)
  python3 - "$adds" $before $after <<'PY'
import sys
adds = int(sys.argv[1])
cpu0, calls0, usec0, cpu1, calls1, usec1 = map(float, sys.argv[2:])
print(f"BullMQ Queue.add, 64 in flight, 5 s  {adds:>7} adds  redis cpu {(cpu1 - cpu0) / adds:5.2f} us/job")
print(f"    evalsha {calls1 - calls0:>16.0f} calls {(usec1 - usec0) / max(calls1 - calls0, 1):7.2f} us/call {(usec1 - usec0) / adds:6.2f} us/job")
PY
}
for rep in $(seq "$reps"); do
  for side in base this; do
    echo "== rep $rep, $side"
    REDIS_URL="redis://127.0.0.1:$port" BENCH_VERBOSE=1 "$dir/$side" "$jobs" |
      grep -E '^(enqueue|drain)|evalsha|^ +(exists|get|set|hexists|hlen|hset|lpush|pttl|expireat|ttl|expire|sadd|sismember|smembers|srem) '
  done
  echo "== rep $rep, BullMQ"
  bullmq
  rc flushall >/dev/null
done
