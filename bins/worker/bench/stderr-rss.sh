#!/usr/bin/env bash
# Peak memory of wa-worker while an --exec handler floods its standard error (a measurement,
# not a test; the test exec_endless_stderr_line_keeps_memory_bounded checks the bound).
#
# Queues one job on a private queue, runs `wa-worker run --exec` with a handler that writes
# BYTES bytes to stderr without a newline, and prints the worker's peak RSS (VmHWM) once the
# handler is done. Run it with 0 and with 67108864 to compare. Bounded: gives up after 60 s.
#
# Usage: bins/worker/bench/stderr-rss.sh [BYTES]   (default 67108864 = 64 MiB)
# Env: REDIS_URL (default redis://127.0.0.1:6379), WA_WORKER (default target/release/wa-worker;
#      build it first: cargo build --release -p wa-worker).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."

bytes=${1:-67108864}
worker=${WA_WORKER:-target/release/wa-worker}
url=${REDIS_URL:-redis://127.0.0.1:6379}
queue="bench-stderr-$$"
dir=$(mktemp -d)
trap 'redis-cli -u "$url" DEL "wa:{$queue}:pending" >/dev/null; rm -rf "$dir"' EXIT

cat >"$dir/handler.sh" <<HANDLER
#!/bin/sh
head -c $bytes /dev/zero | tr '\\0' x >&2
echo done >> '$dir/done'
HANDLER
chmod +x "$dir/handler.sh"
redis-cli -u "$url" LPUSH "wa:{$queue}:pending" \
  '{"v":1,"id":"rss-1","kind":"message","attempt":0,"payload":{}}' >/dev/null
RUST_LOG=error REDIS_URL=$url "$worker" run --queue "$queue" --exec "$dir/handler.sh" 2>/dev/null &
pid=$!
for _ in $(seq 600); do
  [ -s "$dir/done" ] && break
  sleep 0.1
done
[ -s "$dir/done" ] || { echo "handler did not finish" >&2; kill "$pid"; exit 1; }
sleep 0.5
echo "stderr bytes: $bytes, worker peak RSS: $(awk '/VmHWM/ {print $2, $3}' "/proc/$pid/status")"
kill -TERM "$pid"
wait "$pid" || true
