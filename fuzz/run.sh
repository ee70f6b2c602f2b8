#!/usr/bin/env bash
# fuzz/run.sh: coverage-guided fuzzing (cargo-fuzz + libFuzzer) of the signature header,
# the challenge query and the payload walk. Runs on the stable toolchain: no sanitizer
# (-s none needs no -Z flag), debug assertions on (-a), so overflows and bad slicing panic.
#
# Usage: fuzz/run.sh [--short | --seconds N] [TARGET...]
#   --short       15 s per target (CI: 45 s of fuzzing in all, after the build)
#   --seconds N   N seconds per target [15]
#   TARGET        signature | challenge | payload [all three]
#
# Each target first replays fuzz/regressions/<target>/ (inputs that once failed), then
# fuzzes from fuzz/corpus/<target>/ (git-ignored, grows across runs), seeded from
# fuzz/seeds/<target>/ and, for payload, the webhook fixtures in tests/fixtures/webhooks.
# A failure leaves its input in fuzz/artifacts/<target>/ and exits non-zero.
# Installs cargo-fuzz (cargo install cargo-fuzz --locked) when it is missing.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
SECS=15
TARGETS=()

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --short) SECS=15; shift ;;
    --seconds) SECS="$2"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    signature | challenge | payload) TARGETS+=("$1"); shift ;;
    *) echo "unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(signature challenge payload)

log() { echo "[fuzz $(date +%H:%M:%S)] $*" >&2; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  log "installing cargo-fuzz (cargo install cargo-fuzz --locked)"
  cargo install cargo-fuzz --locked
fi

cd "$HERE"
FLAGS=(-O -a -s none)
log "building the fuzz targets (cargo fuzz build ${FLAGS[*]})"
cargo fuzz build "${FLAGS[@]}"

for t in "${TARGETS[@]}"; do
  corpus="$HERE/corpus/$t"
  mkdir -p "$corpus" "$HERE/artifacts/$t"
  cp -n "$HERE/seeds/$t/"* "$corpus/" 2>/dev/null || true
  max_len=4096
  if [ "$t" = payload ]; then
    cp -n "$REPO/tests/fixtures/webhooks/"*.json "$corpus/" 2>/dev/null || true
    max_len=65536
  fi
  if [ -n "$(find "$HERE/regressions/$t" -type f ! -name .gitkeep 2>/dev/null)" ]; then
    log "$t: replaying regressions/$t"
    cargo fuzz run "${FLAGS[@]}" "$t" "$HERE/regressions/$t" -- -runs=0 \
      2>"$HERE/artifacts/$t/regressions.log" || {
      tail -n 40 "$HERE/artifacts/$t/regressions.log" >&2
      log "$t: a regression input fails again"
      exit 1
    }
  fi
  log "$t: fuzzing for ${SECS}s"
  cargo fuzz run "${FLAGS[@]}" "$t" "$corpus" -- \
    -max_total_time="$SECS" -max_len="$max_len" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 2>"$HERE/artifacts/$t/last-run.log" || {
    tail -n 40 "$HERE/artifacts/$t/last-run.log" >&2
    log "$t: FAILED; the input is in fuzz/artifacts/$t/ (copy it to fuzz/regressions/$t/)"
    exit 1
  }
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)|cov: ' "$HERE/artifacts/$t/last-run.log" | tail -n 3 >&2 || true
  log "$t: ok, corpus $(ls "$corpus" | wc -l) inputs"
done
log "all fuzz targets ran clean"
