#!/usr/bin/env bash
# bench/https.sh: wa-ingress over plain HTTP, HTTPS, and HTTPS with mutual TLS, in one run.
#
# Builds the release wa-ingress and the TLS-capable load generator bench/tls-load, makes a
# server CA and certificate (localhost, ECDSA P-256) and a client CA and a client certificate
# with Meta's subject CN (openssl), starts its own Redis on a free loopback port, then, per
# repetition, runs the three modes one after the other (http, https, mtls; each its own
# wa-ingress process): a warm-up, then DURATION seconds of closed-loop load at CONNS keep-alive
# HTTP/1.1 connections with the ingress's CPU read from /proc before and after. Prints one
# markdown table of medians with ratios against plain HTTP, and keeps every raw result in --out.
# Stops everything it started, by PID. A measurement, never a test.
#
# Usage: bench/https.sh [options]
#   --reps N        repetitions of the three modes [3]
#   --duration S    seconds of measured load per mode and repetition [8]
#   --warmup S      warm-up seconds before each measurement [2]
#   --conns N       keep-alive connections [64]
#   --skip-build    use the release binaries already built
#   --out DIR       results folder [target/bench/https-<date>]
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

OUT="${OUT:-$REPO/target/bench/https-$(date -u +%Y%m%dT%H%M%S)}"
mkdir -p "$OUT"
INGRESS="$REPO/target/release/wa-ingress"
LOAD="$REPO/bench/tls-load/target/release/tls-load"
SECRET="bench-secret-0123456789"
SUBJECT="client.webhooks.fbclientcerts.com"

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

# Certificates: a server CA and its localhost certificate, a client CA and Meta's subject.
PKI="$OUT/pki"
mkdir -p "$PKI"
make_ca() { # make_ca NAME
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=$1" -keyout "$PKI/$1-key.pem" -out "$PKI/$1.pem" 2>/dev/null
}
make_leaf() { # make_leaf NAME CA SUBJECT EXTENSIONS
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$3" \
    -keyout "$PKI/$1-key.pem" -out "$PKI/$1.csr" 2>/dev/null
  openssl x509 -req -in "$PKI/$1.csr" -CA "$PKI/$2.pem" -CAkey "$PKI/$2-key.pem" \
    -CAcreateserial -days 2 -extfile <(printf '%s\n' "$4") -out "$PKI/$1.pem" 2>/dev/null
}
make_ca server-ca
make_ca client-ca
make_leaf server server-ca localhost "subjectAltName=DNS:localhost,IP:127.0.0.1"
make_leaf client client-ca "$SUBJECT" "extendedKeyUsage=clientAuth"

REDIS_PORT="$(free_port)"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$OUT" >"$OUT/redis.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

# measure MODE REP: one wa-ingress in MODE under load; appends one JSON line to results.jsonl.
measure() {
  local mode="$1" rep="$2" port scheme="http" tls_env=() load_tls=()
  port="$(free_port)"
  case "$mode" in
    https | mtls)
      scheme="https"
      tls_env=(WA_TLS_CERT="$PKI/server.pem" WA_TLS_KEY="$PKI/server-key.pem")
      load_tls=(--ca "$PKI/server-ca.pem")
      ;;
  esac
  if [ "$mode" = mtls ]; then
    tls_env+=(WA_MTLS_CA="$PKI/client-ca.pem")
    load_tls+=(--cert "$PKI/client.pem" --key "$PKI/client-key.pem")
  fi
  env WHATSAPP_APP_SECRET="$SECRET" WHATSAPP_VERIFY_TOKEN=bench \
    REDIS_URL="redis://127.0.0.1:$REDIS_PORT" WA_LISTEN="127.0.0.1:$port" \
    WA_QUEUE="bench-$mode" RUST_LOG=warn "${tls_env[@]}" \
    "$INGRESS" >"$OUT/ingress-$mode-$rep.log" 2>&1 &
  local pid=$!
  PIDS+=("$pid")
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
  local load=("$LOAD" --url "$scheme://localhost:$port/api/whatsapp/webhook" \
    --addr "127.0.0.1:$port" --secret "$SECRET" -c "$CONNS" "${load_tls[@]}")
  "${load[@]}" -d "$WARMUP" >/dev/null
  local before after
  before="$(awk '{ print $14 + $15 }' "/proc/$pid/stat")"
  "${load[@]}" -d "$DURATION" >"$OUT/load-$mode-$rep.json"
  after="$(awk '{ print $14 + $15 }' "/proc/$pid/stat")"
  kill -TERM "$pid"
  wait "$pid" 2>/dev/null || true
  redis-cli -p "$REDIS_PORT" flushall >/dev/null
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
  for mode in http https mtls; do measure "$mode" "$rep"; done
done

python3 "$REPO/bench/lib/https-table.py" "$OUT/results.jsonl" | tee "$OUT/summary.md"
