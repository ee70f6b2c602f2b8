#!/usr/bin/env bash
# bench/run.sh: the Node reference and wa-ingress + wa-worker, side by side, in one go.
#
# Builds the release binaries, then drives the shared harness
# ($WA_SHARED/bench/run-baseline.sh) once per implementation and repetition,
# interleaved (node 1, ours 1, node 2, ours 2, ...) so that the drift of a shared
# machine hits both. Every call starts its own fresh Redis on its own port and
# stops it again; all traffic goes to 127.0.0.1; every phase is bounded.
#
# Phases per call (run-baseline.sh names): a (throughput/latency, worker stopped),
# b (end-to-end burst with the worker running), drain (backlog built with the
# worker stopped, then drained). --outage adds the Redis-outage phase to the last
# repetition of each side (counts acknowledged-but-lost messages).
#
# Prints one markdown table (ours / reference and the ratio) and writes it, with
# every raw result, under --out.
#
# Usage: bench/run.sh [options]
#   --reps N                interleaved repetitions per side [3]
#   --duration S            seconds of measured load in phase a [10]
#   --warmup S              warm-up seconds before phase a [3]
#   --conns N               load generator connections [64]
#   --burst N               requests in phases b and drain [50000]
#   --worker-concurrency N  both workers (BullMQ's best here was 50) [50]
#   --ours-concurrency N    our worker only, for a best-against-best comparison [same]
#   --outage                also run the Redis-outage phase (last rep, both sides)
#   --noop-drain N          also, per rep and side, a drain of an N-job backlog with no-op
#                           handlers: the reference's counting worker, ours `--discard`
#   --only node|ours        run one side only (smoke tests)
#   --skip-main             skip the main phases (e.g. only --noop-drain)
#   --skip-build            use the release binaries already built
#   --out DIR               results folder [target/bench/run-<date>]
#   -h, --help              this text
#
# Environment: WA_SHARED (default: <repo>/../shared), WA_BENCH_WORK (writable copy of
# the shared kit, default /tmp/wa-bench-work), NODE_PORT/OURS_PORT (3000/18080),
# NODE_REDIS_PORT/OURS_REDIS_PORT (6391/6392), NODE_STATS_PORT/OURS_STATS_PORT (9465/9466).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${WA_SHARED:-$REPO/../shared}"
HARNESS="$SHARED/bench/run-baseline.sh"

REPS=3
DURATION=10
WARMUP=3
CONNS=64
BURST=50000
WORKER_CONCURRENCY=50
OURS_CONCURRENCY=""
OUTAGE=0
NOOP_DRAIN=0
MAIN=1
ONLY=""
BUILD=1
OUT=""

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --conns) CONNS="$2"; shift 2 ;;
    --burst) BURST="$2"; shift 2 ;;
    --worker-concurrency) WORKER_CONCURRENCY="$2"; shift 2 ;;
    --ours-concurrency) OURS_CONCURRENCY="$2"; shift 2 ;;
    --outage) OUTAGE=1; shift ;;
    --noop-drain) NOOP_DRAIN="$2"; shift 2 ;;
    --only) ONLY="$2"; shift 2 ;;
    --skip-main) MAIN=0; shift ;;
    --skip-build) BUILD=0; shift ;;
    --out) OUT="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

[ -x "$HARNESS" ] || [ -f "$HARNESS" ] || {
  echo "no $HARNESS: put shared/ beside the repository or set WA_SHARED" >&2
  exit 1
}
[ -n "$OUT" ] || OUT="$REPO/target/bench/run-$(date +%Y%m%d-%H%M%S)"
[ -n "$OURS_CONCURRENCY" ] || OURS_CONCURRENCY="$WORKER_CONCURRENCY"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

NODE_PORT="${NODE_PORT:-3000}"
OURS_PORT="${OURS_PORT:-18080}"
NODE_REDIS_PORT="${NODE_REDIS_PORT:-6391}"
OURS_REDIS_PORT="${OURS_REDIS_PORT:-6392}"
NODE_STATS_PORT="${NODE_STATS_PORT:-9465}"
OURS_STATS_PORT="${OURS_STATS_PORT:-9466}"

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

BIN="$REPO/target/release"
if [ "$BUILD" = 1 ] && [ "$ONLY" != node ]; then
  log "building release binaries (cargo build --release -p wa-ingress -p wa-worker)"
  (cd "$REPO" && cargo build --release -p wa-ingress -p wa-worker)
fi
if [ "$ONLY" != node ]; then
  for b in wa-ingress wa-worker; do
    [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (build failed or --skip-build without a build)" >&2; exit 1; }
  done
fi

# Our side, as commands the harness runs under `bash -c` with PORT, APP_SECRET,
# WHATSAPP_VERIFY_TOKEN, REDIS_URL, QUEUE_NAME, STATS_PORT and WORKER_CONCURRENCY
# exported. RUST_LOG=warn: the Node reference writes nothing per request either.
# The worker's stdout handler writes one line per job into a file beside the results;
# bench/lib/stats.py turns its metrics and that file into the harness's stats JSON.
ours_ingress='WHATSAPP_APP_SECRET="$APP_SECRET" WA_LISTEN="127.0.0.1:$PORT" WA_QUEUE="$QUEUE_NAME" RUST_LOG=warn exec '"$BIN"'/wa-ingress'
ours_worker_tpl='WA_QUEUE="$QUEUE_NAME" RUST_LOG=warn exec '"$BIN"'/wa-worker run --concurrency "$WORKER_CONCURRENCY" --stdout --metrics-listen "127.0.0.1:$STATS_PORT" >@JOBS@'
ours_noop_worker='WA_QUEUE="$QUEUE_NAME" RUST_LOG=warn exec '"$BIN"'/wa-worker run --discard --concurrency "$WORKER_CONCURRENCY" --metrics-listen "127.0.0.1:$STATS_PORT"'
ours_noop_stats="bash $REPO/bench/lib/jobs-done.sh"' "http://127.0.0.1:$STATS_PORT/metrics"'
ours_stats_tpl='python3 '"$REPO"'/bench/lib/stats.py --metrics "http://127.0.0.1:$STATS_PORT/metrics" --jobs @JOBS@'

run_side() { # run_side node|ours REP
  local side="$1" rep="$2" dir phases="a,b,drain"
  dir="$OUT/$side-rep$rep"
  if [ "$OUTAGE" = 1 ] && [ "$rep" = "$REPS" ]; then phases="$phases,outage"; fi
  local common=(--label "$side-rep$rep" --out "$dir" --conns "$CONNS" --duration "$DURATION"
    --reps 1 --warmup "$WARMUP" --burst "$BURST" --phases "$phases"
    --worker-concurrency "$WORKER_CONCURRENCY")
  log "$side rep $rep -> $dir"
  if [ "$side" = node ]; then
    bash "$HARNESS" "${common[@]}" --port "$NODE_PORT" --redis-port "$NODE_REDIS_PORT" \
      --stats-port "$NODE_STATS_PORT" >"$OUT/$side-rep$rep.stdout" 2>"$OUT/$side-rep$rep.stderr"
  else
    mkdir -p "$dir"
    local jobs="$dir/jobs.jsonl"
    bash "$HARNESS" "${common[@]}" --worker-concurrency "$OURS_CONCURRENCY" --port "$OURS_PORT" --redis-port "$OURS_REDIS_PORT" \
      --stats-port "$OURS_STATS_PORT" \
      --ingress-cmd "$ours_ingress" \
      --worker-cmd "${ours_worker_tpl//@JOBS@/$jobs}" \
      --stats-cmd "${ours_stats_tpl//@JOBS@/$jobs}" \
      >"$OUT/$side-rep$rep.stdout" 2>"$OUT/$side-rep$rep.stderr"
    # The job lines were only needed for the counts; they can be hundreds of MB.
    rm -f "$jobs"
  fi
  grep -E 'phase (a|b|drain|outage)' "$OUT/$side-rep$rep.stderr" | sed 's/^/    /' >&2 || true
}

# run_noop_drain node|ours REP: the harness's drain phase alone, N jobs, no-op handlers.
run_noop_drain() {
  local side="$1" rep="$2" dir
  dir="$OUT/$side-noop-rep$rep"
  local common=(--label "$side-noop-rep$rep" --out "$dir" --conns "$CONNS" --burst "$NOOP_DRAIN"
    --phases drain --worker-concurrency "$WORKER_CONCURRENCY")
  log "$side no-op drain rep $rep -> $dir"
  if [ "$side" = node ]; then
    bash "$HARNESS" "${common[@]}" --port "$NODE_PORT" --redis-port "$NODE_REDIS_PORT" \
      --stats-port "$NODE_STATS_PORT" >"$dir.stdout" 2>"$dir.stderr"
  else
    bash "$HARNESS" "${common[@]}" --worker-concurrency "$OURS_CONCURRENCY" --port "$OURS_PORT" \
      --redis-port "$OURS_REDIS_PORT" --stats-port "$OURS_STATS_PORT" --ingress-cmd "$ours_ingress" \
      --worker-cmd "$ours_noop_worker" --stats-cmd "$ours_noop_stats" >"$dir.stdout" 2>"$dir.stderr"
  fi
  grep -E 'phase drain' "$dir.stderr" | sed 's/^/    /' >&2 || true
}

{
  echo "date=$(date -Is) host=$(hostname) repo=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo ?)"
  echo "cpu=$(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2);print $2}') cores=$(nproc) mem=$(free -g | awk '/Mem:/{print $2}')GiB kernel=$(uname -r)"
  echo "rustc=$(rustc --version) node=$(node --version 2>/dev/null || echo n/a) redis=$(redis-server --version | awk '{print $3}')"
  echo "reps=$REPS duration=$DURATION warmup=$WARMUP conns=$CONNS burst=$BURST worker_concurrency=$WORKER_CONCURRENCY ours_concurrency=$OURS_CONCURRENCY outage=$OUTAGE noop_drain=$NOOP_DRAIN"
  echo "load before start: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/env.txt"
cat "$OUT/env.txt" >&2

for ((r = 1; r <= REPS; r++)); do
  if [ "$MAIN" = 1 ]; then
    [ "$ONLY" = ours ] || run_side node "$r"
    [ "$ONLY" = node ] || run_side ours "$r"
  fi
  if [ "$NOOP_DRAIN" -gt 0 ]; then
    [ "$ONLY" = ours ] || run_noop_drain node "$r"
    [ "$ONLY" = node ] || run_noop_drain ours "$r"
  fi
done

python3 "$REPO/bench/lib/table.py" "$OUT" | tee "$OUT/table.md"
log "results in $OUT"
