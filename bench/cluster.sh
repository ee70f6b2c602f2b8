#!/usr/bin/env bash
# bench/cluster.sh: enqueue and drain rates of one queue on Redis Clusters of 1, 2 and 3
# masters, with one shard per master and with more shards, and the Redis CPU each job costs
# on every master. A measurement, never a test.
#
# Builds the release wa-ingress and wa-worker, starts one private cluster per size (masters
# only, no replicas; loopback, ports <= 55535, slots split evenly with CLUSTER ADDSLOTSRANGE;
# all sizes at once, so that the repetitions interleave), then per repetition, cluster size and
# shard count: flushes the cluster, starts wa-ingress on it (--redis-cluster, --shards) and
# enqueues --requests signed one-message webhooks through it with wa-loadgen (the shared kit's
# load generator: every webhook from another sender), stops it, and drains the backlog with
# `wa-worker run --discard`. Around each phase it reads every master's INFO cpu and INFO
# commandstats, the ingress's or worker's CPU from /proc, and the machine's busy time. The
# queue's name is picked so that its shards spread evenly over the masters (with as many
# shards as masters: one shard on each; bench/lib/cluster-queue.py). Prints a markdown table
# of medians with the spread over repetitions, and the capacity 10 and 100 masters would have
# at the measured Redis CPU per job and master. Stops every process it started, by PID.
#
# Usage: bench/cluster.sh [options]
#   --masters LIST        cluster sizes, comma-separated [1,2,3]
#   --shards LIST         shard counts to run besides one per master [16]
#   --reps N              repetitions [3]
#   --requests N          webhooks enqueued per cycle [60000]
#   --warmup N            webhooks sent before each measured enqueue (drained too) [2000]
#   --conns N             load generator connections [64]
#   --concurrency N       the worker's --concurrency [1024]
#   --ordered             also, per cycle, enqueue with --shard-by sender and drain with
#                         `wa-worker run --ordered` (needs a wa-worker that has it)
#   --skip-build          use the release binaries already built
#   --out DIR             results folder [target/bench/cluster-<date>]
#   -h, --help            this text
# Environment: WA_SHARED (default <repo>/../shared), WA_BENCH_WORK (/tmp/wa-bench-work).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
. "$REPO/bench/lib/common.sh"
SHARED="${WA_SHARED:-$REPO/../shared}"
WORK="${WA_BENCH_WORK:-${TMPDIR:-/tmp}/wa-bench-work}"
LOADGEN="$WORK/loadgen/target/release/wa-loadgen"
BIN="$REPO/target/release"
SECRET="cluster-bench-secret"

MASTERS="1,2,3"
SHARDS="16"
REPS=3
REQUESTS=60000
WARMUP=2000
CONNS=64
CONCURRENCY=1024
ORDERED=0
BUILD=1
OUT=""
DRAIN_LIMIT=300

while [ $# -gt 0 ]; do
  case "$1" in
    --masters) MASTERS="$2"; shift 2 ;;
    --shards) SHARDS="$2"; shift 2 ;;
    --reps) REPS="$2"; shift 2 ;;
    --requests) REQUESTS="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --conns) CONNS="$2"; shift 2 ;;
    --concurrency) CONCURRENCY="$2"; shift 2 ;;
    --ordered) ORDERED=1; shift ;;
    --skip-build) BUILD=0; shift ;;
    --out) OUT="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

[ -n "$OUT" ] || OUT="$REPO/target/bench/cluster-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

if [ "$BUILD" = 1 ]; then
  log "building release binaries (cargo build --release -p wa-ingress -p wa-worker)"
  (cd "$REPO" && cargo build --release -p wa-ingress -p wa-worker) >"$OUT/build.log" 2>&1
fi
for b in wa-ingress wa-worker; do
  [ -x "$BIN/$b" ] || { echo "missing $BIN/$b (build failed, or --skip-build without a build)" >&2; exit 1; }
done
if [ "$ORDERED" = 1 ] && ! "$BIN/wa-worker" run --help | grep -q -- '--ordered'; then
  echo "--ordered: this wa-worker has no 'run --ordered'" >&2
  exit 2
fi
if [ ! -x "$LOADGEN" ]; then
  # The shared harness copies the kit into $WORK when it starts (its --help included).
  bash "$SHARED/bench/run-baseline.sh" --help >/dev/null
  log "building wa-loadgen in $WORK/loadgen"
  (cd "$WORK/loadgen" && cargo build --release) >>"$OUT/build.log" 2>&1
fi

PIDS=()     # every redis-server started here
CLIENT=""   # the ingress or worker running now
cleanup() {
  [ -z "$CLIENT" ] || kill -TERM "$CLIENT" 2>/dev/null || true
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

declare -A PORTS # masters -> "port port ..."

# start_cluster M: M cluster nodes, slots split evenly (master i: the slots s with
# s * M / 16384 = i, as cluster-queue.py assumes), joined by CLUSTER MEET.
start_cluster() {
  local m="$1" i port ports=()
  for ((i = 0; i < m; i++)); do
    port="$(cluster_port)"
    mkdir -p "$OUT/redis-$m-$i"
    # cluster-announce-ip: each node names itself by its address from the start, as in a
    # multi-host deployment (a one-node cluster would otherwise give an empty host).
    redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
      --cluster-enabled yes --cluster-config-file nodes.conf --cluster-announce-ip 127.0.0.1 \
      --dir "$OUT/redis-$m-$i" \
      >"$OUT/redis-$m-$i.log" 2>&1 &
    PIDS+=($!)
    ports+=("$port")
  done
  for ((i = 0; i < m; i++)); do
    port="${ports[$i]}"
    for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    redis-cli -p "$port" cluster addslotsrange $(((i * 16384 + m - 1) / m)) \
      $((((i + 1) * 16384 + m - 1) / m - 1)) >/dev/null
    [ "$i" = 0 ] || redis-cli -p "${ports[0]}" cluster meet 127.0.0.1 "$port" >/dev/null
  done
  PORTS[$m]="${ports[*]}"
  wait_ok "$m"
  log "cluster of $m master(s) on ports ${ports[*]}"
}

# wait_ok M: until every master of the cluster says cluster_state:ok.
wait_ok() {
  local p ok
  for _ in $(seq 300); do
    ok=0
    for p in ${PORTS[$1]}; do
      redis-cli -p "$p" cluster info | tr -d '\r' | grep -qx 'cluster_state:ok' && ok=$((ok + 1))
    done
    [ "$ok" = "$1" ] && return 0
    sleep 0.1
  done
  echo "the cluster of $1 masters is not ok" >&2
  exit 1
}

# place_slot M SLOT I: the (empty) slot SLOT served by master I from now on: CLUSTER SETSLOT
# ... NODE on that master first, then on the others.
place_slot() {
  local m="$1" slot="$2" i="$3" ports id p
  read -r -a ports <<<"${PORTS[$m]}"
  id="$(redis-cli -p "${ports[$i]}" cluster myid)"
  for p in "${ports[$i]}" "${ports[@]}"; do
    redis-cli -p "$p" cluster setslot "$slot" node "$id" >/dev/null
  done
  wait_ok "$m"
}

seeds() { local p out=(); for p in ${PORTS[$1]}; do out+=("127.0.0.1:$p"); done; (IFS=,; echo "${out[*]}"); }

# snapshot M: one line per master: "<port> <cpu us> <scripts' us> <script calls>".
snapshot() { local p; for p in ${PORTS[$1]}; do echo "$p $(redis_counters "$p")"; done; }

# backlog M: one line per master: "<port> <jobs pending in the shards it serves>".
backlog() {
  local p k n
  for p in ${PORTS[$1]}; do
    n=0
    for k in $(redis-cli -p "$p" --scan --pattern '*:pending'); do
      n=$((n + $(redis-cli -p "$p" llen "$k")))
    done
    echo "$p $n"
  done
}

# queue_env M S QUEUE [SHARD_BY]: the environment both binaries run with.
queue_env() {
  local p
  read -r p _ <<<"${PORTS[$1]}"
  echo "REDIS_URL=redis://127.0.0.1:$p WA_REDIS_CLUSTER=$(seeds "$1") WA_SHARDS=$2 WA_QUEUE=$3 \
WA_SHARD_BY=${4:-id} WA_REDIS_CHECK=off RUST_LOG=warn"
}

# record ...: appends one JSON line to results.jsonl from the phase's measurements.
record() {
  python3 - "$@" >>"$OUT/results.jsonl" <<'PY'
import json, os, sys
(masters, shards, rep, phase, jobs, secs, client_ticks, busy_ticks, before, after, backlog) = sys.argv[1:]
hz = os.sysconf("SC_CLK_TCK")
b = {l.split()[0]: l.split()[1:] for l in before.splitlines()}
a = {l.split()[0]: l.split()[1:] for l in after.splitlines()}
jobs_of = dict(l.split() for l in backlog.splitlines())
nodes = [{"port": int(p), "jobs": int(jobs_of[p]), "cpu_us": int(a[p][0]) - int(b[p][0]),
          "script_us": int(a[p][1]) - int(b[p][1]),
          "script_calls": int(a[p][2]) - int(b[p][2])}
         for p in b]
print(json.dumps({"masters": int(masters), "shards": int(shards), "rep": int(rep), "phase": phase,
                  "jobs": int(jobs), "secs": float(secs),
                  "client_cpu_us": int(client_ticks) / hz * 1e6,
                  "busy_cores": int(busy_ticks) / hz / float(secs), "nodes": nodes,
                  "load1": float(open("/proc/loadavg").read().split()[0])}))
PY
}

# enqueue M S REP QUEUE PHASE SHARD_BY: the ingress on the cluster, a warm-up, then the
# measured load; leaves the backlog (warm-up included) in the queue.
enqueue() {
  local m="$1" s="$2" rep="$3" queue="$4" phase="$5" by="$6" port before after t0 t1 c0 c1 m0 m1
  port="$(free_port)"
  env $(queue_env "$m" "$s" "$queue" "$by") WHATSAPP_APP_SECRET="$SECRET" WHATSAPP_VERIFY_TOKEN=bench \
    WA_LISTEN="127.0.0.1:$port" "$BIN/wa-ingress" >>"$OUT/ingress.log" 2>&1 &
  CLIENT=$!
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" && break; sleep 0.1; done
  local load=("$LOADGEN" run --url "http://127.0.0.1:$port/api/whatsapp/webhook" --secret "$SECRET" -c "$CONNS")
  "${load[@]}" -n "$WARMUP" >/dev/null
  local json="$OUT/load-$m-$s-$rep-$phase.json" warm
  warm="$(backlog "$m")"
  before="$(snapshot "$m")"
  c0="$(ticks "$CLIENT")" m0="$(busy_ticks)" t0="$(date +%s.%N)"
  "${load[@]}" -n "$REQUESTS" --json "$json" >/dev/null
  t1="$(date +%s.%N)" c1="$(ticks "$CLIENT")" m1="$(busy_ticks)"
  after="$(snapshot "$m")"
  kill -TERM "$CLIENT"
  wait "$CLIENT" 2>/dev/null || true
  CLIENT=""
  local ok bad
  read -r ok bad < <(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(r["ok_2xx"], r["non_2xx"] + r["errors"])' "$json")
  [ "$bad" = 0 ] || log "warning: $bad requests answered other than 2xx or failed ($json)"
  BACKLOG="$(backlog "$m")"
  record "$m" "$s" "$rep" "$phase" "$ok" "$(elapsed "$t0" "$t1")" "$((c1 - c0))" "$((m1 - m0))" \
    "$before" "$after" "$(join -j 1 <(sort <<<"$warm") <(sort <<<"$BACKLOG") | awk '{ print $1, $3 - $2 }')"
}

# drain M S REP QUEUE PHASE [FLAGS...]: wa-worker run --discard on the backlog, timed from its
# start until its jobs-done counter reaches the backlog.
drain() {
  local m="$1" s="$2" rep="$3" queue="$4" phase="$5"
  shift 5
  local total mport before after t0 t1 c1 m0 m1 done_=0
  total="$(awk '{ n += $2 } END { print n }' <<<"$BACKLOG")"
  mport="$(free_port)"
  before="$(snapshot "$m")"
  m0="$(busy_ticks)" t0="$(date +%s.%N)"
  env $(queue_env "$m" "$s" "$queue") "$BIN/wa-worker" run --discard --concurrency "$CONCURRENCY" \
    --metrics-listen "127.0.0.1:$mport" "$@" >>"$OUT/worker.log" 2>&1 &
  CLIENT=$!
  local deadline=$(($(date +%s) + DRAIN_LIMIT))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    done_="$(bash "$REPO/bench/lib/jobs-done.sh" "http://127.0.0.1:$mport/metrics" 2>/dev/null |
      tr -dc 0-9 || true)"
    [ "${done_:-0}" -ge "$total" ] && break
    sleep 0.02
  done
  t1="$(date +%s.%N)" c1="$(ticks "$CLIENT")" m1="$(busy_ticks)"
  after="$(snapshot "$m")"
  kill -TERM "$CLIENT"
  wait "$CLIENT" 2>/dev/null || true
  CLIENT=""
  [ "${done_:-0}" -ge "$total" ] || { echo "drain: ${done_:-0} of $total jobs in ${DRAIN_LIMIT}s" >&2; exit 1; }
  record "$m" "$s" "$rep" "$phase" "$total" "$(elapsed "$t0" "$t1")" "$c1" "$((m1 - m0))" \
    "$before" "$after" "$BACKLOG"
}

elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
flush() { local p; for p in ${PORTS[$1]}; do redis-cli -p "$p" flushall >/dev/null; done; }

IFS=, read -r -a SIZES <<<"$MASTERS"
IFS=, read -r -a MORE <<<"$SHARDS"
write_env "$OUT/env.txt" "masters=$MASTERS shards=one per master,$SHARDS reps=$REPS requests=$REQUESTS warmup=$WARMUP conns=$CONNS concurrency=$CONCURRENCY ordered=$ORDERED"
for m in "${SIZES[@]}"; do start_cluster "$m"; done
: >"$OUT/results.jsonl"

for ((rep = 1; rep <= REPS; rep++)); do
  for m in "${SIZES[@]}"; do
    for s in "$m" "${MORE[@]}"; do
      read -r queue spread moves < <(python3 "$REPO/bench/lib/cluster-queue.py" bench "$m" "$s")
      flush "$m"
      for mv in $moves; do place_slot "$m" "${mv%:*}" "${mv#*:}"; done
      [ -z "$moves" ] || spread="one each, after moving slots (slot:master) $moves"
      log "rep $rep: $m master(s), $s shard(s) (per master: $spread), queue $queue"
      enqueue "$m" "$s" "$rep" "$queue" enqueue id
      drain "$m" "$s" "$rep" "$queue" drain
      if [ "$ORDERED" = 1 ]; then
        flush "$m"
        enqueue "$m" "$s" "$rep" "$queue" enqueue-by-sender sender
        drain "$m" "$s" "$rep" "$queue" drain-ordered --ordered
      fi
      tail -n "$((ORDERED == 1 ? 4 : 2))" "$OUT/results.jsonl" | python3 "$REPO/bench/lib/cluster-table.py" --brief >&2
      # Back to the even split the other shard counts' names were picked for.
      flush "$m"
      for mv in $moves; do place_slot "$m" "${mv%:*}" "$((${mv%:*} * m / 16384))"; done
    done
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/env.txt" >&2

python3 "$REPO/bench/lib/cluster-table.py" "$OUT/results.jsonl" | tee "$OUT/table.md"
log "results in $OUT"
