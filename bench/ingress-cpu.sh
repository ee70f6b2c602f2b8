#!/usr/bin/env bash
# CPU per request of wa-ingress alone, and of its Redis (a measurement, not a test).
#
# Starts a private redis-server on a free loopback port (no persistence) and, per repetition,
# in turn for each variant: flushes Redis, starts the variant's server, warms it up, then loads
# it with the shared load generator (wa-loadgen: closed loop, ~800-byte signed text webhooks,
# unique wamids) for --duration seconds, reading the server's CPU (utime + stime, /proc) and
# Redis's (INFO cpu) right before and after, and stops the server. Variants, interleaved rep
# by rep:
#   base    a wa-ingress of another revision (WA_INGRESS_BASE; left out when unset)
#   ours    this checkout's wa-ingress (WA_INGRESS, default target/release/wa-ingress)
#   hmac    the bare hyper + HMAC server of ../shared/bench/run-limits.sh (WA_HYPER_LIMITS,
#           default /tmp/hyper-limits/target/release/hyper-limits; left out when absent):
#           the machine's floor for reading and verifying a request, no Redis
# Prints one line per run, then per variant the median (min-max) and each rep's ratios
# against the first variant. With --perf DIR, one more pass per variant runs under
# `perf record --call-graph dwarf` (its figures are not in the table) and writes
# DIR/<variant>.perf.data, DIR/<variant>.perf.txt (`perf report --no-children`, by symbol) and
# DIR/<variant>.areas.md (percent of samples per area of the code, bench/lib/perf-areas.py).
# Everything listens on 127.0.0.1 and is stopped by PID at the end.
#
# Usage: bench/ingress-cpu.sh [-r REPS] [-d SECS] [-c CONNS] [--warmup SECS] [--perf DIR] [--skip-build]
#   e.g. WA_INGRESS_BASE=/tmp/wa-ingress-before bench/ingress-cpu.sh -r 5 -d 10
# Env: WA_SHARED (default <repo>/../shared), WA_BENCH_WORK (/tmp/wa-bench-work), WA_INGRESS,
#      WA_INGRESS_BASE, WA_HYPER_LIMITS. Run it under `flock /tmp/bench.lock` on a shared machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. bench/lib/common.sh

reps=3 secs=10 conns=64 warmup=2 build=1 perf_dir=""
while [ $# -gt 0 ]; do
  case "$1" in
    -r) reps=$2; shift 2 ;;
    -d) secs=$2; shift 2 ;;
    -c) conns=$2; shift 2 ;;
    --warmup) warmup=$2; shift 2 ;;
    --perf) perf_dir=$2; shift 2 ;;
    --skip-build) build=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 64 ;;
  esac
done

shared=${WA_SHARED:-../shared}
work=${WA_BENCH_WORK:-${TMPDIR:-/tmp}/wa-bench-work}
loadgen=$work/loadgen/target/release/wa-loadgen
if [ ! -x "$loadgen" ]; then
  bash "$shared/bench/run-baseline.sh" --help >/dev/null # copies the kit into $work
  (cd "$work/loadgen" && cargo build --release)
fi
ours=${WA_INGRESS:-target/release/wa-ingress}
[ "$build" = 0 ] || cargo build --release -q -p wa-ingress
[ -x "$ours" ] || { echo "no $ours: cargo build --release -p wa-ingress" >&2; exit 1; }
hyper=${WA_HYPER_LIMITS:-/tmp/hyper-limits/target/release/hyper-limits}
variants=()
[ -n "${WA_INGRESS_BASE:-}" ] && variants+=(base)
variants+=(ours)
[ -x "$hyper" ] && variants+=(hmac)
[ -z "$perf_dir" ] || mkdir -p "$perf_dir"

tmp=$(mktemp -d /tmp/wa-bench-ingress.XXXXXX)
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no \
  --logfile "$tmp/redis.log" &
redis_pid=$!
pid=
cleanup() {
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null || true
  kill -TERM "$redis_pid" 2>/dev/null && wait "$redis_pid" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT
rc() { redis-cli -p "$rport" "$@"; }
for _ in $(seq 50); do rc ping >/dev/null 2>&1 && break; sleep 0.1; done
secret=bench-ingress-secret
write_env "$tmp/env" "reps=$reps duration=${secs}s warmup=${warmup}s connections=$conns" \
  "variants: ${variants[*]}${WA_INGRESS_BASE:+ (base = $WA_INGRESS_BASE)}"

# start VARIANT PORT: the variant's server in the background ($pid), once it answers
start() {
  local variant=$1 port=$2 bin=$ours
  case "$variant" in
    hmac) "$hyper" hmac "$port" "$secret" 2>"$tmp/server.log" & pid=$! ;;
    *)
      [ "$variant" = base ] && bin=$WA_INGRESS_BASE
      WHATSAPP_APP_SECRET=$secret WHATSAPP_VERIFY_TOKEN=bench-token \
        REDIS_URL="redis://127.0.0.1:$rport" WA_LISTEN="127.0.0.1:$port" WA_QUEUE=bench \
        RUST_LOG=warn "$bin" 2>"$tmp/server.log" &
      pid=$!
      ;;
  esac
  for _ in $(seq 100); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/healthz" && return 0
    sleep 0.1
  done
  echo "$variant did not start:" >&2
  cat "$tmp/server.log" >&2
  exit 1
}
stop() { kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true; pid=; }
redis_cpu() { rc info cpu | awk -F: '/used_cpu_(sys|user):/ {s += $2} END {printf "%.3f", s}'; }
load() { # load PORT SECS [JSON]
  "$loadgen" run --url "http://127.0.0.1:$1/api/whatsapp/webhook" --secret "$secret" \
    -c "$conns" -d "$2" ${3:+--json "$3"} >/dev/null 2>>"$tmp/loadgen.log"
}

# one VARIANT REP: a warmed-up server, then the measured load; appends a line to results
one() {
  local variant=$1 rep=$2 port i0 i1 r0 r1
  port=$(free_port)
  rc flushall >/dev/null
  start "$variant" "$port"
  load "$port" "$warmup"
  i0=$(ticks "$pid") r0=$(redis_cpu)
  load "$port" "$secs" "$tmp/run.json"
  i1=$(ticks "$pid") r1=$(redis_cpu)
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status") # peak RSS so far, KiB
  stop
  python3 - "$tmp/run.json" "$rep" "$variant" "$i0" "$i1" "$r0" "$r1" "$(getconf CLK_TCK)" \
    "$(cut -d' ' -f1 /proc/loadavg)" "$hwm" <<'EOF' | tee -a "$tmp/results" >&2
import json, sys
run = json.load(open(sys.argv[1]))
rep, variant = sys.argv[2], sys.argv[3]
i0, i1, r0, r1, hz = (float(x) for x in sys.argv[4:9])
n = run["ok_2xx"]
bad = run["non_2xx"] + run["errors"]
ingress = (i1 - i0) / hz / n * 1e6
redis = (r1 - r0) / n * 1e6
lat = run["lat_us"]
print(f"{rep} {variant} {run['rps']:.0f} {ingress:.2f} {redis:.2f} {lat['p50']} {lat['p99']} {bad} {sys.argv[9]} {float(sys.argv[10]) / 1024:.1f}")
EOF
}

echo "rep variant req_per_s server_us_per_req redis_us_per_req p50_us p99_us non2xx_or_errors load1 peak_rss_mib" \
  | tee "$tmp/results" >&2
for rep in $(seq "$reps"); do
  for variant in "${variants[@]}"; do one "$variant" "$rep"; done
done

python3 - "$tmp/results" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1]).read().splitlines()[1:]]
by = {}
for rep, variant, rps, cpu, redis, p50, p99, bad, load, rss in rows:
    by.setdefault(variant, []).append((float(rps), float(cpu), float(redis), float(p99), float(rss)))
def fmt(xs, f):
    return f"{f(statistics.median(xs))} ({f(min(xs))}-{f(max(xs))})"
print("| variant | req/s | server CPU us/req | Redis CPU us/req | p99 ms | peak RSS MiB |")
print("|---|---|---|---|---|---|")
for variant, runs in by.items():
    col = lambda i: [r[i] for r in runs]
    print(f"| {variant} | {fmt(col(0), lambda x: f'{x:,.0f}')} | {fmt(col(1), lambda x: f'{x:.1f}')}"
          f" | {fmt(col(2), lambda x: f'{x:.1f}')} | {fmt(col(3), lambda x: f'{x / 1000:.2f}')}"
          f" | {fmt(col(4), lambda x: f'{x:.1f}')} |")
names = list(by)
for other in names[1:]:
    first = names[0]
    for i, what in ((0, "req/s"), (1, "server CPU per request")):
        ratios = [o[i] / f[i] for o, f in zip(by[other], by[first])]
        print(f"{other} / {first} {what} per rep: " + " ".join(f"{x:.2f}" for x in ratios))
EOF

if [ -n "$perf_dir" ]; then
  for variant in "${variants[@]}"; do
    port=$(free_port)
    rc flushall >/dev/null
    start "$variant" "$port"
    load "$port" "$warmup"
    perf record --call-graph dwarf,16384 -F 499 -p "$pid" -o "$perf_dir/$variant.perf.data" \
      -- sleep "$secs" 2>>"$tmp/perf.log" &
    perf_pid=$!
    load "$port" "$secs" "$tmp/perf-run.json"
    wait "$perf_pid" || true
    stop
    perf report -i "$perf_dir/$variant.perf.data" --no-children --stdio --percent-limit 0.3 \
      --sort symbol -g none 2>/dev/null | sed 's/  *$//' >"$perf_dir/$variant.perf.txt" || true
    perf script -i "$perf_dir/$variant.perf.data" 2>/dev/null \
      | python3 bench/lib/perf-areas.py --freq 499 \
        --requests "$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["ok_2xx"])' "$tmp/perf-run.json")" \
        >"$perf_dir/$variant.areas.md"
    cat "$perf_dir/$variant.areas.md"
    log "perf profile of $variant: $perf_dir/$variant.perf.txt"
  done
fi
