#!/usr/bin/env bash
# Dashboard benchmark (a measurement, not a test): page and filter latency with a large dead
# list, what the scan costs Redis (per command, from SLOWLOG) against a Lua scan of the same
# list, and a drain with and without a dashboard open.
#
# Starts a private redis-server on a free port, fills queue `bench-dash` with --dead dead jobs
# (about 700 bytes each: kinds message/status/error in turn, five business numbers, every tenth
# error a timeout), starts `wa-worker dashboard` on it, times each request --reps times with curl
# (median), then runs bins/worker/bench/drain.sh on the same queue three ways: no dashboard; a
# dashboard with its page open (the overview every 5 s, what the page asks for); a dashboard with
# an operator running filtered searches back to back. Stops everything it started, by PID.
#
# Usage: bench/dashboard.sh [--dead N] [--reps N] [--drain N] [--drain-runs N] [--skip-build]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

dead=100000 reps=5 drain=200000 drain_runs=3 build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --dead) dead=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --drain) drain=$2; shift 2 ;;
    --drain-runs) drain_runs=$2; shift 2 ;;
    --skip-build) build=0; shift ;;
    *) echo "unknown option $1" >&2; exit 64 ;;
  esac
done

# shellcheck source=scripts/redis.sh
. scripts/redis.sh
[ "$build" = 1 ] && cargo build --release -p wa-worker
bin=target/release/wa-worker
queue=bench-dash
tmp=$(mktemp -d)
redis_pid="" dash_pid="" load_pid=""
cleanup() {
  for p in $load_pid $dash_pid $redis_pid; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

port=$(wa_free_port)
redis-server --bind 127.0.0.1 --port "$port" --dir "$tmp" --save "" --appendonly no \
  --logfile "$tmp/redis.log" >/dev/null 2>&1 &
redis_pid=$!
for _ in $(seq 1 100); do wa_redis_answers 127.0.0.1 "$port" && break; sleep 0.1; done
export REDIS_URL="redis://127.0.0.1:$port"
rc() { redis-cli -p "$port" "$@"; }

fill_dead() {
  python3 - "$dead" "wa:{$queue}:dead" <<'EOF' | rc --pipe >/dev/null
import sys, time
n, key = int(sys.argv[1]), sys.argv[2]
now = int(time.time() * 1000)
kinds = ["message", "status", "error"]
out = sys.stdout
for i in range(n):
    kind = kinds[i % 3]
    error = "handler timed out after 30s" if i % 10 == 0 else "forward: 502 Bad Gateway from https://crm.example/hook"
    w = "wamid.HBgLMTY1MDM4NzQzMzIVAgASGBQzQTRBNjU5OUFFRTAz%07d" % i
    job = ('{"v":1,"id":"%s","kind":"%s","wamid":"%s","from":"16505551234","type":"text",'
           '"text":"Hello there %d","timestamp":"1700000000","contact_name":"Kerry Fisher",'
           '"phone_number_id":"10654035224292%d","display_phone_number":"15550783881",'
           '"waba_id":"102290129340398","received_at":%d,"attempt":5,"payload":'
           '{"from":"16505551234","id":"%s","timestamp":"1700000000","text":{"body":"Hello there"},'
           '"type":"text"},"error":"%s","died_at":%d}') % (
        w, kind, w, i, i % 5, now - 3600000, w, error, now - (n - i) * 10)
    parts = ["LPUSH", key, job]
    out.write("*%d\r\n" % len(parts))
    for p in parts:
        b = p.encode()
        out.write("$%d\r\n%s\r\n" % (len(b), p))
EOF
}

start_dashboard() {
  local dport
  dport=$(wa_free_port)
  "$bin" dashboard --queue "$queue" --listen "127.0.0.1:$dport" 2>"$tmp/dash.log" &
  dash_pid=$!
  base="http://127.0.0.1:$dport"
  for _ in $(seq 1 100); do curl -sf "$base/api/overview" >/dev/null && return; sleep 0.1; done
  echo "the dashboard did not start:" >&2; cat "$tmp/dash.log" >&2; exit 1
}
stop_dashboard() { kill "$dash_pid"; wait "$dash_pid" 2>/dev/null || true; dash_pid=""; }

# Median of --reps timings of one request, in ms, and the answer's size.
timed() {
  local path=$1 i
  for i in $(seq "$reps"); do
    curl -s -o "$tmp/body" -w '%{time_total}\n' "$base$path"
  done | sort -n | awk -v r="$reps" '{a[NR] = $1} END {printf "%8.1f ms", a[int((r + 1) / 2)] * 1000}'
  printf '  %9s bytes  %s\n' "$(wc -c < "$tmp/body")" "$path"
}

echo "filling dead with $dead jobs"
fill_dead
echo "dead: $(rc llen "wa:{$queue}:dead") entries, $(rc memory usage "wa:{$queue}:dead" | awk '{printf "%.0f MB", $1 / 1e6}') in Redis"
start_dashboard
last=$((dead - 50))
echo
echo "== latency (median of $reps; load $(cut -d' ' -f1 /proc/loadavg))"
timed "/"
timed "/api/overview"
timed "/api/dead?limit=50"
timed "/api/dead?limit=50&offset=$last"
timed "/api/dead?limit=50&kind=status"
timed "/api/dead?limit=50&kind=status&offset=33000"
timed "/api/dead?limit=50&phone_number_id=106540352242923&kind=message"
timed "/api/dead?limit=50&error=timed+out"
timed "/api/dead?limit=50&newer_than=10m"
key=$(curl -s "$base/api/dead?limit=1&offset=$((dead / 2))" | python3 -c 'import json,sys; print(json.load(sys.stdin)["jobs"][0]["key"])')
timed "/api/job?key=$key"
t0=$(date +%s.%N)
"$bin" dead list --queue "$queue" --kind status --limit 10 >/dev/null
t1=$(date +%s.%N)
echo "$t0 $t1" | awk '{printf "%8.1f ms  wa-worker dead list --kind status --limit 10 (whole process)\n", ($2 - $1) * 1000}'

echo
echo "== what Redis spends (SLOWLOG, every command)"
rc config set slowlog-log-slower-than 0 >/dev/null
rc config set slowlog-max-len 10000 >/dev/null
rc slowlog reset >/dev/null
curl -s -o /dev/null "$base/api/dead?limit=50&kind=status"
rc slowlog get 10000 > "$tmp/slowlog"
python3 - "$tmp/slowlog" <<'EOF'
import sys
words = [w.strip() for w in open(sys.argv[1]).read().split("\n")]
# entries: <id> <unix time> <microseconds> <argv...> <client addr> <client name>
lr = [int(words[i - 1]) for i, w in enumerate(words) if w == "LRANGE"]
if lr:
    print(f"filtered page (kind=status): {len(lr)} LRANGE calls, longest {max(lr) / 1000:.2f} ms, "
          f"total {sum(lr) / 1000:.1f} ms of Redis time")
EOF
rc slowlog reset >/dev/null
lua='local n = 0
for _, raw in ipairs(redis.call("LRANGE", KEYS[1], 0, -1)) do
  if cjson.decode(raw).kind == ARGV[1] then n = n + 1 end
end
return n'
matches=$(rc eval "$lua" 1 "wa:{$queue}:dead" status)
rc slowlog get 100 > "$tmp/slowlog"
python3 - "$tmp/slowlog" "$matches" <<'EOF'
import sys
words = [w.strip() for w in open(sys.argv[1]).read().split("\n")]
# the dashboard's sampler runs meanwhile: find the EVAL among the entries
us = max(int(words[i - 1]) for i, w in enumerate(words) if w.lower() == "eval")
print(f"the same filter as one Lua script (cjson.decode per entry): {sys.argv[2]} matches, "
      f"Redis busy {us / 1000:.1f} ms in one piece")
EOF
rc config set slowlog-log-slower-than 10000 >/dev/null
stop_dashboard

drain_once() {
  # drain.sh deletes the queue's keys when it ends: the dead list is made again each time.
  rc del "wa:{$queue}:dead" >/dev/null
  fill_dead
  printf '%-10s ' "$1"
  WA_BENCH_QUEUE=$queue WA_WORKER=$bin bins/worker/bench/drain.sh -n "$drain" -r 1 -- --discard
}
echo
echo "== drain of $drain jobs with $dead dead jobs beside them, the three ways interleaved"
echo "   (none: no dashboard; open: a dashboard and its page's overview every 5 s;"
echo "    filtering: a dashboard and an operator filtering kind=status back to back)"
for run in $(seq "$drain_runs"); do
  drain_once none
  start_dashboard
  ( while :; do curl -s -o /dev/null "$base/api/overview"; sleep 5; done ) &
  load_pid=$!
  drain_once open
  kill "$load_pid"; wait "$load_pid" 2>/dev/null || true
  ( while :; do curl -s -o /dev/null "$base/api/dead?limit=50&kind=status"; done ) &
  load_pid=$!
  drain_once filtering
  kill "$load_pid"; wait "$load_pid" 2>/dev/null || true; load_pid=""
  stop_dashboard
done
