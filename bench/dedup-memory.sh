#!/usr/bin/env bash
# Redis memory per dedup marker (a measurement, not a test): the old layout's keys against the
# buckets, at several rates of notifications per second, on a private redis-server so that
# `INFO memory` sees nothing else. About a minute for a million markers per layout and rate.
#
# Usage: bench/dedup-memory.sh [MARKERS] [RATE...]     e.g. bench/dedup-memory.sh 1000000 1 10 100 1000
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
n=${1:-1000000}
shift || true
rates=("$@")
[ ${#rates[@]} -gt 0 ] || rates=(1 10 100 1000)

# Touched first: after bench/enqueue-cpu.sh the wa-queue and wa-kind artifacts may be another
# revision's.
find crates/*/src crates/queue/examples -type f -exec touch {} +
cargo build --release -q -p wa-queue --example dedup_memory
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dir=$(mktemp -d)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" >"$dir/log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
redis-cli -p "$port" info server | grep -E '^redis_version'
redis-cli -p "$port" config get set-max-intset-entries | paste -sd' '
REDIS_URL="redis://127.0.0.1:$port" target/release/examples/dedup_memory "$n" "${rates[@]}"
