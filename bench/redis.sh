#!/usr/bin/env bash
# bench/redis.sh: what TLS to Redis and --min-replicas 1 cost the ingress, against plain TCP to
# the same Redis, in one run.
#
# Builds the release wa-ingress and the load generator bench/tls-load, makes a CA and a
# localhost certificate (openssl), starts its own Redis primary on free loopback ports (plain and
# TLS on the same server) with one replica, then, per repetition, runs three wa-ingress
# processes one after the other under the same load: plain TCP to Redis, TLS to Redis
# (rediss:// with the CA), and plain TCP with --min-replicas 1 (WAIT 1 after every enqueue).
# The replica is attached in every mode, so only the WAIT differs. Load: a warm-up, then
# DURATION seconds closed loop at CONNS keep-alive HTTP/1.1 connections; the ingress's CPU is
# read from /proc. Prints one markdown table of medians with ratios against plain TCP.
# Stops everything it started, by PID. A measurement, never a test.
#
# Usage: bench/redis.sh [options]
#   --reps N        repetitions of the three modes [3]
#   --duration S    seconds of measured load per mode and repetition [8]
#   --warmup S      warm-up seconds before each measurement [2]
#   --conns N       keep-alive connections [64]
#   --skip-build    use the release binaries already built
#   --out DIR       results folder [target/bench/redis-<date>]
#   -h, --help      this text
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REPS=3
DURATION=8
WARMUP=2
CONNS=64
BUILD=1
OUT=""

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

while [ $# -gt 0 ]; do
  case "$1" in
    --reps) REPS="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --conns) CONNS="$2"; shift 2 ;;
    --skip-build) BUILD=0; shift ;;
    --out) OUT="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

OUT="${OUT:-$REPO/target/bench/redis-$(date -u +%Y%m%dT%H%M%S)}"
mkdir -p "$OUT"
INGRESS="$REPO/target/release/wa-ingress"
LOAD="$REPO/bench/tls-load/target/release/tls-load"
SECRET="bench-secret-0123456789"

if [ "$BUILD" = 1 ]; then
  echo "building wa-ingress and tls-load (release)" >&2
  (cd "$REPO" && cargo build --release -p wa-ingress) >"$OUT/build.log" 2>&1
  (cd "$REPO/bench/tls-load" && cargo build --release) >>"$OUT/build.log" 2>&1
fi

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

PKI="$OUT/pki"
mkdir -p "$PKI"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench CA" \
  -keyout "$PKI/ca-key.pem" -out "$PKI/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$PKI/server-key.pem" -out "$PKI/server.csr" 2>/dev/null
openssl x509 -req -in "$PKI/server.csr" -CA "$PKI/ca.pem" -CAkey "$PKI/ca-key.pem" \
  -CAcreateserial -days 2 -extfile <(printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n') \
  -out "$PKI/server.pem" 2>/dev/null

PORT="$(free_port)"
TLS_PORT="$(free_port)"
REPLICA_PORT="$(free_port)"
mkdir -p "$OUT/primary" "$OUT/replica"
redis-server --port "$PORT" --tls-port "$TLS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --tls-cert-file "$PKI/server.pem" --tls-key-file "$PKI/server-key.pem" \
  --tls-ca-cert-file "$PKI/ca.pem" --tls-auth-clients no \
  --dir "$OUT/primary" >"$OUT/primary.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do redis-cli -p "$PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-server --port "$REPLICA_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --replicaof 127.0.0.1 "$PORT" --dir "$OUT/replica" >"$OUT/replica.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do
  redis-cli -p "$PORT" info replication | grep -q 'state=online' && break
  sleep 0.1
done

# measure MODE REP: one wa-ingress in MODE under load; appends one JSON line to results.jsonl.
measure() {
  local mode="$1" rep="$2" port redis_env=()
  port="$(free_port)"
  case "$mode" in
    plain) redis_env=(REDIS_URL="redis://127.0.0.1:$PORT") ;;
    tls) redis_env=(REDIS_URL="rediss://localhost:$TLS_PORT" WA_REDIS_CA_CERT="$PKI/ca.pem") ;;
    replicas) redis_env=(REDIS_URL="redis://127.0.0.1:$PORT" WA_MIN_REPLICAS=1) ;;
  esac
  env WHATSAPP_APP_SECRET="$SECRET" WHATSAPP_VERIFY_TOKEN=bench WA_LISTEN="127.0.0.1:$port" \
    WA_QUEUE="bench-$mode" WA_REDIS_CHECK=off RUST_LOG=warn "${redis_env[@]}" \
    "$INGRESS" >"$OUT/ingress-$mode-$rep.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
  local load=("$LOAD" --url "http://localhost:$port/api/whatsapp/webhook" \
    --addr "127.0.0.1:$port" --secret "$SECRET" -c "$CONNS")
  "${load[@]}" -d "$WARMUP" >/dev/null
  local before after
  before="$(awk '{ print $14 + $15 }' "/proc/$pid/stat")"
  "${load[@]}" -d "$DURATION" >"$OUT/load-$mode-$rep.json"
  after="$(awk '{ print $14 + $15 }' "/proc/$pid/stat")"
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  redis-cli -p "$PORT" flushall >/dev/null
  python3 - "$OUT/load-$mode-$rep.json" "$mode" "$rep" "$((after - before))" \
    "$(getconf CLK_TCK)" >>"$OUT/results.jsonl" <<'PY'
import json, sys
path, mode, rep, ticks, hz = sys.argv[1:]
r = json.load(open(path))
r.update(mode=mode, rep=int(rep), cpu_us_per_req=int(ticks) / int(hz) * 1e6 / max(r["requests"], 1))
print(json.dumps(r))
PY
  echo "$mode rep $rep: $(tail -n 1 "$OUT/results.jsonl")" >&2
}

: >"$OUT/results.jsonl"
for rep in $(seq "$REPS"); do
  for mode in plain tls replicas; do measure "$mode" "$rep"; done
done

python3 "$REPO/bench/lib/https-table.py" "$OUT/results.jsonl" \
  "plain=plain TCP to Redis" "tls=TLS to Redis" "replicas=--min-replicas 1" | tee "$OUT/summary.md"
