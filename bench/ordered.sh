#!/usr/bin/env bash
# Drain rate with `wa-worker run --ordered` against without (a measurement, not a test).
#
# Starts a private redis-server on a free loopback port (no persistence), and per repetition,
# in turn for each variant: fills a fresh queue with N contract jobs (about 640 bytes each, the
# shape the ingress writes) from S senders taking turns (job i from sender i mod S), starts
# `wa-worker run --discard` on it, polls until nothing is pending, in hand or waiting (ordered:
# no sender held), stops it with SIGTERM and prints jobs/s with the CPU per job of the worker
# and of Redis (INFO cpu; nothing else uses this Redis). Variants, interleaved rep by rep:
#   base       a wa-worker built before ordered mode (WA_WORKER_BASE; left out when unset)
#   unordered  this checkout's wa-worker without --ordered
#   ordered    this checkout's wa-worker with --ordered
# then a summary per variant (median, min-max) and the ordered/unordered ratio of each rep.
# The Redis is stopped, by PID, at the end. Bounded: a drain gives up after --timeout seconds.
#
# Usage: bench/ordered.sh [-n JOBS] [-s SENDERS] [-r REPS] [--timeout S] [--skip-build] [-- WORKER FLAGS...]
#   e.g. bench/ordered.sh -n 100000 -s 10000 -r 5
#        WA_WORKER_BASE=/tmp/wa-worker-before bench/ordered.sh -n 100000 -s 100 -r 5
# Env: WA_WORKER (default target/release/wa-worker, built unless --skip-build),
#      WA_WORKER_BASE (a wa-worker binary of another revision, optional).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. bench/lib/common.sh

jobs=100000 senders=10000 reps=3 limit=300 build=1
while [ $# -gt 0 ]; do
  case "$1" in
    -n) jobs=$2; shift 2 ;;
    -s) senders=$2; shift 2 ;;
    -r) reps=$2; shift 2 ;;
    --timeout) limit=$2; shift 2 ;;
    --skip-build) build=0; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "unknown option $1" >&2; exit 64 ;;
  esac
done
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(--discard)

bin=${WA_WORKER:-target/release/wa-worker}
[ "$build" = 0 ] || cargo build --release -q -p wa-worker
[ -x "$bin" ] || { echo "no $bin: cargo build --release -p wa-worker" >&2; exit 1; }
variants=(unordered ordered)
[ -n "${WA_WORKER_BASE:-}" ] && variants=(base unordered ordered)

tmp=$(mktemp -d /tmp/wa-bench-ordered.XXXXXX)
port=$(free_port)
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
  --logfile "$tmp/redis.log" &
redis_pid=$!
cleanup() {
  [ -n "${pid:-}" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  kill -TERM "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
rc() { redis-cli -p "$port" "$@"; }
for _ in $(seq 50); do rc ping >/dev/null 2>&1 && break; sleep 0.1; done
url="redis://127.0.0.1:$port"
write_env "$tmp/env" "jobs=$jobs senders=$senders reps=$reps worker flags: ${flags[*]}" \
  "variants: ${variants[*]}${WA_WORKER_BASE:+ (base = $WA_WORKER_BASE)}"

# fill QUEUE: the pending list of QUEUE gets the jobs, oldest first (as LPUSHed by a producer)
fill() {
  python3 - "$jobs" "$senders" "wa:{$1}:pending" <<'EOF' | rc --pipe >/dev/null
import sys
n, senders, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
w = "wamid.HBgLMTY1MDM4NzQzMzIVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
out = sys.stdout
for i in range(n):
    sender = "1650%07d" % (i % senders)
    job = ('{"v":1,"id":"%s%d","kind":"message","wamid":"%s","from":"%s","type":"text",'
           '"text":"Hello there","timestamp":"1700000000","contact_name":"Kerry Fisher",'
           '"phone_number_id":"106540352242922","display_phone_number":"15550783881",'
           '"waba_id":"102290129340398","received_at":1700000000000,"attempt":0,"payload":'
           '{"from":"%s","id":"%s","timestamp":"1700000000","text":{"body":"Hello there"},'
           '"type":"text"}}') % (w, i, w, sender, sender, w)
    parts = ["LPUSH", key, job]
    out.write("*%d\r\n" % len(parts))
    for p in parts:
        b = p.encode()
        out.write("$%d\r\n%s\r\n" % (len(b), p))
EOF
}

cpu() { rc info cpu | awk -F: '/used_cpu_(sys|user):/ {s += $2} END {printf "%.3f", s}'; }
# nothing pending, in hand, or held (a held sender may have jobs waiting)
drained() {
  local q=$1 k
  [ "$(rc llen "wa:{$q}:pending")" = 0 ] || return 1
  [ "$(rc hlen "wa:{$q}:holders")" = 0 ] || return 1
  for k in $(rc --scan --pattern "wa:{$q}:processing:*"); do
    [ "$(rc llen "$k")" = 0 ] || return 1
  done
}

echo "rep variant jobs_per_s worker_us_per_job redis_us_per_job" > "$tmp/results"
for rep in $(seq "$reps"); do
  for variant in "${variants[@]}"; do
    queue="bench-ordered-$rep-$variant"
    fill "$queue"
    worker=$bin extra=()
    [ "$variant" = base ] && worker=$WA_WORKER_BASE
    [ "$variant" = ordered ] && extra=(--ordered)
    r0=$(cpu)
    t0=$(date +%s.%N)
    REDIS_URL=$url /usr/bin/time -f "%U %S" -o "$tmp/time" "$worker" run --queue "$queue" \
      "${flags[@]}" "${extra[@]}" > /dev/null 2> "$tmp/log" &
    pid=$!
    deadline=$(( $(date +%s) + limit ))
    until drained "$queue"; do
      if [ "$(date +%s)" -ge "$deadline" ]; then echo "gave up after ${limit}s" >&2; exit 1; fi
      sleep 0.05
    done
    t1=$(date +%s.%N)
    r1=$(cpu)
    kill -TERM "$(pgrep -P "$pid")" 2>/dev/null || kill -TERM "$pid"
    wait "$pid"
    pid=
    read -r wu ws < "$tmp/time"
    python3 -c "
n, d = $jobs, $t1 - $t0
w, r = $wu + $ws, $r1 - $r0
print(f'$rep $variant {n / d:.0f} {w / n * 1e6:.2f} {r / n * 1e6:.2f}')
" | tee -a "$tmp/results" >&2
    for k in $(rc --scan --pattern "wa:{$queue}:*"); do rc del "$k" >/dev/null; done
  done
done

python3 - "$tmp/results" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]).read().splitlines()[1:]]
by = {}
for rep, variant, rate, w, r in rows:
    by.setdefault(variant, []).append((int(rep), float(rate), float(w), float(r)))
print("| variant | jobs/s median (min-max) | worker CPU us/job | Redis CPU us/job |")
print("|---|---|---|---|")
for variant, runs in by.items():
    col = lambda i: [run[i] for run in runs]
    fmt = lambda xs, f: f"{f(statistics.median(xs))} ({f(min(xs))}-{f(max(xs))})"
    print(f"| {variant} | {fmt(col(1), lambda x: f'{x:,.0f}')} | {fmt(col(2), lambda x: f'{x:.1f}')} | {fmt(col(3), lambda x: f'{x:.1f}')} |")
if "ordered" in by and "unordered" in by:
    ratios = [o[1] / u[1] for o, u in zip(by["ordered"], by["unordered"])]
    print("ordered / unordered jobs/s per rep: " + " ".join(f"{x:.2f}" for x in ratios))
    rr = [o[3] / u[3] for o, u in zip(by["ordered"], by["unordered"])]
    print("ordered / unordered Redis CPU per job per rep: " + " ".join(f"{x:.2f}" for x in rr))
if "base" in by and "unordered" in by:
    ratios = [u[1] / b[1] for u, b in zip(by["unordered"], by["base"])]
    print("unordered / base jobs/s per rep: " + " ".join(f"{x:.2f}" for x in ratios))
EOF
