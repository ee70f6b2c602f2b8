#!/usr/bin/env bash
# Drain benchmark of wa-worker (a measurement, not a test).
#
# Fills a private queue with N contract jobs (a text message job of about 640 bytes, the shape
# the ingress writes) through `redis-cli --pipe`, starts `wa-worker run` with the given handler
# flags, polls until nothing is pending or in hand, stops it with SIGTERM, and prints jobs/s plus
# the CPU seconds the worker and Redis spent (Redis's from INFO cpu, so other clients' load is
# included). The queue's keys are deleted afterwards. Bounded: gives up after --timeout seconds.
#
# Usage: bins/worker/bench/drain.sh [-n JOBS] [-r RUNS] [--timeout S] [-- WORKER FLAGS...]
#   e.g. bins/worker/bench/drain.sh -n 200000 -r 3 -- --stdout
#        bins/worker/bench/drain.sh -n 200000 -- --discard --threads 2
# Env: REDIS_URL (default redis://127.0.0.1:6379), WA_WORKER (default target/release/wa-worker;
#      build it first: cargo build --release -p wa-worker), WA_BENCH_QUEUE (default a fresh
#      name; every key of the queue is deleted at the end either way).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."

jobs=200000 runs=1 limit=300
while [ $# -gt 0 ]; do
  case "$1" in
    -n) jobs=$2; shift 2 ;;
    -r) runs=$2; shift 2 ;;
    --timeout) limit=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "unknown option $1" >&2; exit 64 ;;
  esac
done
flags=("$@")
[ ${#flags[@]} -gt 0 ] || flags=(--stdout)

url=${REDIS_URL:-redis://127.0.0.1:6379}
bin=${WA_WORKER:-target/release/wa-worker}
[ -x "$bin" ] || { echo "no $bin: cargo build --release -p wa-worker" >&2; exit 1; }
rc() { redis-cli -u "$url" "$@"; }
queue=${WA_BENCH_QUEUE:-bench-drain-$$-$RANDOM}
tmp=$(mktemp -d)
cleanup() {
  [ -n "${pid:-}" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  for k in $(rc --scan --pattern "wa:{$queue}:*"); do rc del "$k" >/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT

python3 - "$jobs" "wa:{$queue}:pending" > "$tmp/cmds" <<'EOF'
import sys
n, key = int(sys.argv[1]), sys.argv[2]
w = "wamid.HBgLMTY1MDM4NzQzMzIVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA="
out = sys.stdout
for i in range(n):
    job = ('{"v":1,"id":"%s%d","kind":"message","wamid":"%s","from":"16505551234","type":"text",'
           '"text":"Hello there","timestamp":"1700000000","contact_name":"Kerry Fisher",'
           '"phone_number_id":"106540352242922","display_phone_number":"15550783881",'
           '"waba_id":"102290129340398","received_at":1700000000000,"attempt":0,"payload":'
           '{"from":"16505551234","id":"%s","timestamp":"1700000000","text":{"body":"Hello there"},'
           '"type":"text"}}') % (w, i, w, w)
    parts = ["LPUSH", key, job]
    out.write("*%d\r\n" % len(parts))
    for p in parts:
        b = p.encode()
        out.write("$%d\r\n%s\r\n" % (len(b), p))
EOF

cpu() { rc info cpu | awk -F: '/used_cpu_(sys|user):/ {s += $2} END {printf "%.2f", s}'; }
in_hand() {
  local n=0 k
  for k in $(rc --scan --pattern "wa:{$queue}:processing:*"); do n=$((n + $(rc llen "$k"))); done
  echo $n
}

for run in $(seq "$runs"); do
  rc --pipe < "$tmp/cmds" > /dev/null
  r0=$(cpu)
  t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$tmp/time" "$bin" run --queue "$queue" "${flags[@]}" > /dev/null 2> "$tmp/log" &
  pid=$!
  deadline=$(( $(date +%s) + limit ))
  while :; do
    # one cheap probe per tick (a probe costs CPU the worker and Redis would otherwise get);
    # the lists in hand are only looked at once pending is empty
    if [ "$(rc llen "wa:{$queue}:pending")" = 0 ] && [ "$(in_hand)" = 0 ]; then break; fi
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
print(f'run $run: {n} jobs in {d:.2f}s = {n / d:,.0f} jobs/s; CPU per job: worker {w / n * 1e6:.1f} us, redis {r / n * 1e6:.1f} us; load {open(\"/proc/loadavg\").read().split()[0]}')
"
done
