#!/usr/bin/env bash
# bench/scale.sh: scale curves of wa-ingress (and wa-worker), each point short.
#
# Curves (all against one private Redis started here, flushed between points; 127.0.0.1 only):
#   conns          closed-loop connections 1..512, ~800-byte signed text webhooks (wa-loadgen)
#   notifications  notifications per POST 1..1000 (bench/lib/post.py, 16 connections)
#   body           body size ~1 KB..3 MB: 1..1000 messages of up to ~3 KB (post.py)
#   backlog        BACKLOG requests enqueued with no worker (enqueue rate against the queue
#                  length, from wa-loadgen's per-second timeline and LLEN samples), then
#                  drained by `wa-worker run --discard` (drain rate against the queue length)
# Each point samples the CPU and RSS of the ingress and Redis (procmon.py of the shared kit).
# Results: OUT/<curve>.jsonl; with --plot, PNGs into docs/perf/ (needs python3 matplotlib:
# pip install matplotlib) and markdown tables on stdout.
#
# Usage: bench/scale.sh [options]
#   --curves LIST     comma list of conns,notifications,body,backlog [all]
#   --point-secs S    seconds per point [3]
#   --backlog N       requests in the backlog curve [1000000]
#   --skip-build      use the release binaries already built
#   --plot            render docs/perf/*.png and print the tables
#   --out DIR         results folder [target/bench/scale-<date>]
#   -h, --help        this text
# Environment: WA_SHARED (default <repo>/../shared), WA_BENCH_WORK (/tmp/wa-bench-work),
# SCALE_PORT (18090), SCALE_REDIS_PORT (6393).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="${WA_SHARED:-$REPO/../shared}"
HARNESS="$SHARED/bench/run-baseline.sh"
WORK="${WA_BENCH_WORK:-${TMPDIR:-/tmp}/wa-bench-work}"
LOADGEN="$WORK/loadgen/target/release/wa-loadgen"
PROCMON="$WORK/loadgen/procmon.py"
CURVES="conns,notifications,body,backlog"
SECS=3
BACKLOG=1000000
BUILD=1
PLOT=0
OUT=""
PORT="${SCALE_PORT:-18090}"
REDIS_PORT="${SCALE_REDIS_PORT:-6393}"
SECRET="scale-app-secret"
QUEUE="scale"

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --curves) CURVES="$2"; shift 2 ;;
    --point-secs) SECS="$2"; shift 2 ;;
    --backlog) BACKLOG="$2"; shift 2 ;;
    --skip-build) BUILD=0; shift ;;
    --plot) PLOT=1; shift ;;
    --out) OUT="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done
has() { case ",$CURVES," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
log() { echo "[scale $(date +%H:%M:%S)] $*" >&2; }

[ -n "$OUT" ] || OUT="$REPO/target/bench/scale-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
BIN="$REPO/target/release"

if [ "$BUILD" = 1 ]; then
  log "building release binaries"
  (cd "$REPO" && cargo build --release -p wa-ingress -p wa-worker)
fi
if [ ! -x "$LOADGEN" ]; then
  # The harness copies the kit into $WORK when it starts (its --help included); build there.
  bash "$HARNESS" --help >/dev/null
  log "building wa-loadgen in $WORK/loadgen"
  (cd "$WORK/loadgen" && cargo build --release)
fi

REDIS_PID="" INGRESS_PID="" WORKER_PID=""
cleanup() {
  for p in $WORKER_PID $INGRESS_PID; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 0.5
  for p in $WORKER_PID $INGRESS_PID; do kill -KILL "$p" 2>/dev/null || true; done
  [ -z "$REDIS_PID" ] || kill -TERM "$REDIS_PID" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  echo "something already listens on $REDIS_PORT; set SCALE_REDIS_PORT" >&2
  exit 1
fi
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
  --pidfile "$OUT/redis.pid" --logfile "$OUT/redis.log" --dir "$OUT"
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
REDIS_PID="$(cat "$OUT/redis.pid")"
RCLI=(redis-cli -p "$REDIS_PORT")
URL="http://127.0.0.1:$PORT/api/whatsapp/webhook"

WHATSAPP_APP_SECRET="$SECRET" WHATSAPP_VERIFY_TOKEN=scale-token REDIS_URL="redis://127.0.0.1:$REDIS_PORT" \
  WA_LISTEN="127.0.0.1:$PORT" WA_QUEUE="$QUEUE" RUST_LOG=warn "$BIN/wa-ingress" >>"$OUT/ingress.log" 2>&1 &
INGRESS_PID=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
log "redis $REDIS_PID :$REDIS_PORT, ingress $INGRESS_PID :$PORT, results in $OUT"
{
  echo "date=$(date -Is) host=$(hostname) repo=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo ?)"
  echo "cpu=$(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2);print $2}') cores=$(nproc) kernel=$(uname -r)"
  echo "point_secs=$SECS backlog=$BACKLOG load_before=$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/env.txt"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime of all threads, in clock ticks

# point CURVE X JSONFILE CMD...: flush, run CMD (the load) in the foreground. The CPU time of
# the ingress and Redis is read from /proc right before and after it (so CPU per request does
# not depend on when a sampler starts); procmon.py samples RSS meanwhile.
point() {
  local curve="$1" x="$2" json="$3"
  shift 3
  "${RCLI[@]}" flushall >/dev/null
  sleep 0.3
  python3 "$PROCMON" --duration "$((SECS + 30))" ingress="$INGRESS_PID" redis="$REDIS_PID" \
    >"$OUT/$curve-$x-procs.json" &
  local pm=$! i0 r0 i1 r1
  sleep 0.3
  i0="$(ticks "$INGRESS_PID")" r0="$(ticks "$REDIS_PID")"
  "$@" >/dev/null 2>"$OUT/$curve-$x.err" || log "load for $curve=$x exited non-zero (see $OUT/$curve-$x.err)"
  i1="$(ticks "$INGRESS_PID")" r1="$(ticks "$REDIS_PID")"
  kill -TERM "$pm" 2>/dev/null || true
  wait "$pm" 2>/dev/null || true
  python3 - "$curve" "$x" "$json" "$OUT/$curve-$x-procs.json" "$((i1 - i0))" "$((r1 - r0))" "$(getconf CLK_TCK)" \
    >>"$OUT/$curve.jsonl" <<'PY'
import json, sys
curve, x, load, procs, di, dr, tck = sys.argv[1:]
print(json.dumps({"curve": curve, "x": float(x), "load": json.load(open(load)),
                  "cpu_s": {"ingress": int(di) / int(tck), "redis": int(dr) / int(tck)},
                  "procs": json.load(open(procs))}))
PY
  log "$curve=$x: $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.0f req/s, non2xx %s, errors %s" % (d["rps"], d.get("non_2xx"), d.get("errors")))' "$json")"
}

if has conns; then
  : >"$OUT/conns.jsonl"
  for c in 1 2 4 8 16 32 64 128 256 512; do
    point conns "$c" "$OUT/conns-$c.json" \
      "$LOADGEN" run --url "$URL" --secret "$SECRET" -c "$c" -d "$SECS" --quiet --json "$OUT/conns-$c.json"
  done
fi

if has notifications; then
  : >"$OUT/notifications.jsonl"
  for n in 1 10 100 250 500 1000; do
    point notifications "$n" "$OUT/notifications-$n.json" \
      python3 "$REPO/bench/lib/post.py" --url "$URL" --secret "$SECRET" --notifications "$n" \
      --text-bytes 40 -c 16 --procs 2 -d "$SECS" --json "$OUT/notifications-$n.json"
  done
fi

if has body; then
  : >"$OUT/body.jsonl"
  # messages x text bytes -> about 1 KB, 10 KB, 100 KB, 1 MB, 3 MB
  for spec in 1:600 4:2300 34:2800 340:2900 1000:2950; do
    n="${spec%%:*}" tb="${spec##*:}"
    point body "$n" "$OUT/body-$n.json" \
      python3 "$REPO/bench/lib/post.py" --url "$URL" --secret "$SECRET" --notifications "$n" \
      --text-bytes "$tb" -c 8 --procs 2 -d "$SECS" --json "$OUT/body-$n.json"
  done
fi

if has backlog; then
  "${RCLI[@]}" flushall >/dev/null
  pending="wa:{$QUEUE}:pending"
  sampler() { # prints "epoch_ms llen" every 0.25 s until killed
    while :; do echo "$(date +%s%3N) $("${RCLI[@]}" llen "$pending")"; sleep 0.25; done
  }
  log "backlog: enqueue $BACKLOG with no worker"
  sampler >"$OUT/backlog-enqueue-llen.txt" &
  sp=$!
  t0="$(date +%s%3N)"
  "$LOADGEN" run --url "$URL" --secret "$SECRET" -c 64 -n "$BACKLOG" --timeline --timeout 10 --quiet \
    --json "$OUT/backlog-enqueue.json" >/dev/null 2>"$OUT/backlog-enqueue.err"
  kill "$sp" 2>/dev/null || true
  wait "$sp" 2>/dev/null || true
  echo "$t0" >"$OUT/backlog-enqueue-t0.txt"
  "${RCLI[@]}" info memory | grep -E '^used_memory:' >"$OUT/backlog-redis-mem.txt" || true
  log "backlog: $("${RCLI[@]}" llen "$pending") pending; draining with wa-worker --discard"
  sampler >"$OUT/backlog-drain-llen.txt" &
  sp=$!
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT" WA_QUEUE="$QUEUE" RUST_LOG=warn \
    "$BIN/wa-worker" run --discard --concurrency 64 >>"$OUT/worker.log" 2>&1 &
  WORKER_PID=$!
  python3 "$PROCMON" --duration 300 worker="$WORKER_PID" redis="$REDIS_PID" >"$OUT/backlog-drain-procs.json" &
  pm=$!
  end=$(($(date +%s) + 300))
  while [ "$("${RCLI[@]}" llen "$pending")" != 0 ] && [ "$(date +%s)" -lt "$end" ]; do sleep 0.2; done
  sleep 0.5
  kill -TERM "$pm" 2>/dev/null || true
  wait "$pm" 2>/dev/null || true
  kill "$sp" 2>/dev/null || true
  wait "$sp" 2>/dev/null || true
  kill -TERM "$WORKER_PID" 2>/dev/null || true
  wait "$WORKER_PID" 2>/dev/null || true
  WORKER_PID=""
  log "backlog: drained, $("${RCLI[@]}" llen "$pending") left"
fi

if [ "$PLOT" = 1 ]; then
  python3 "$REPO/bench/lib/plot.py" "$OUT" "$REPO/docs/perf" | tee "$OUT/scale.md"
fi
log "results in $OUT"
