#!/usr/bin/env bash
# The whole test suite: format check, clippy with -D warnings, the dependency rule, every test
# (Redis included), and a short bounded fuzz run. Uses the Redis at $REDIS_URL when one answers,
# else starts a private one for the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/redis.sh
. scripts/redis.sh
trap wa_redis_down EXIT
trap 'exit 130' INT TERM

wa_log "cargo fmt --check"
cargo fmt --all -- --check

wa_log "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

wa_log "dependency rule: the worker shares only wa-queue with the ingress"
forbidden=$(cargo tree -p wa-worker --prefix none -e normal,build --locked | grep -E '^wa-(payload|signature|challenge|webhook) ' | sort -u || true)
if [ -n "$forbidden" ]; then
  wa_log "wa-worker must depend on wa-queue only, but it pulls in: $forbidden"
  exit 1
fi

wa_redis_up

# The dashboard's browser test drives Debian's headless Chromium through chromedriver.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    wa_log "chromium or chromedriver is missing: installing Debian's chromium and chromium-driver"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >&2
  else
    wa_log "the dashboard's browser test needs chromium and chromedriver (Debian: 'sudo apt-get"
    wa_log "install chromium chromium-driver'); it will fail without them."
  fi
fi

wa_log "building the binaries the process-level tests run"
cargo build --workspace --bins --locked

wa_log "cargo test (REDIS_URL=$REDIS_URL)"
results=$(mktemp "${TMPDIR:-/tmp}/wa-test.XXXXXX")
cargo test --workspace --all-targets --locked 2>&1 | tee "$results"
cargo test --workspace --doc --locked 2>&1 | tee -a "$results"
summary=$(awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed", p, f }' "$results")
rm -f "$results"

if [ -x fuzz/run.sh ]; then
  wa_log "short fuzz run"
  fuzz/run.sh --short
fi
wa_log "all checks passed"
echo "tests: $summary"
