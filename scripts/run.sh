#!/usr/bin/env bash
# Runs the whole system on this machine: Redis (the one at $REDIS_URL, or a private one),
# wa-ingress and wa-worker with a development secret and token, sends one signed sample
# webhook through, and keeps running until Ctrl-C.
#
# Override anything with the usual variables, e.g.
#   WHATSAPP_APP_SECRET=... WHATSAPP_VERIFY_TOKEN=... WA_LISTEN=0.0.0.0:8080 scripts/run.sh
# The demo uses the queue "dev" (WA_QUEUE) so it never mixes with a production queue.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/redis.sh
. scripts/redis.sh

PIDS=()
stop_all() {
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  wa_redis_down
}
trap stop_all EXIT
trap 'echo; wa_log "stopping"; exit 0' INT TERM

wa_log "building wa-ingress and wa-worker (release)"
cargo build --release --locked -p wa-ingress -p wa-worker
cargo build --release --locked -p wa-webhook-suite --example send_webhook

wa_redis_up

export WHATSAPP_APP_SECRET="${WHATSAPP_APP_SECRET:-dev-app-secret}"
export WHATSAPP_VERIFY_TOKEN="${WHATSAPP_VERIFY_TOKEN:-dev-verify-token}"
export WA_QUEUE="${WA_QUEUE:-dev}"
export WA_WEBHOOK_PATH="${WA_WEBHOOK_PATH:-/api/whatsapp/webhook}"
if [ -z "${WA_LISTEN:-}" ]; then
  port=8080
  if wa_redis_answers 127.0.0.1 8080 || (exec 2>/dev/null; exec 8<>/dev/tcp/127.0.0.1/8080); then
    port=$(wa_free_port)
    wa_log "port 8080 is taken: listening on $port instead"
  fi
  export WA_LISTEN="127.0.0.1:$port"
fi
base="http://${WA_LISTEN/0.0.0.0/127.0.0.1}"

target/release/wa-ingress &
PIDS+=($!)
target/release/wa-worker run --stdout &
PIDS+=($!)

for _ in $(seq 1 100); do
  (exec 2>/dev/null; exec 8<>"/dev/tcp/${WA_LISTEN%:*}/${WA_LISTEN##*:}") && break
  kill -0 "${PIDS[0]}" 2>/dev/null || { wa_log "wa-ingress did not start (see above)"; exit 1; }
  sleep 0.1
done

cat >&2 <<BANNER

  wa-webhook is running.
    Callback URL : ${base}${WA_WEBHOOK_PATH}   (expose it over HTTPS, e.g. behind a reverse proxy)
    Verify token : ${WHATSAPP_VERIFY_TOKEN}
    App secret   : the development one; set WHATSAPP_APP_SECRET to your app's secret for real traffic
    Redis        : ${REDIS_URL} (queue "${WA_QUEUE}")
    Metrics      : ${base}/metrics

  Sending one signed sample webhook (tests/fixtures/webhooks/01_text.json); the worker prints
  each job it handles as one JSON line below. Ctrl-C stops everything.

BANNER
target/release/examples/send_webhook "${base}${WA_WEBHOOK_PATH}" tests/fixtures/webhooks/01_text.json >&2 \
  || wa_log "the sample webhook was not accepted (see above)"

wait -n "${PIDS[@]}" || true
wa_log "a process exited; stopping the rest"
exit 1
