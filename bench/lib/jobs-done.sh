#!/usr/bin/env bash
# Stats command for the shared harness when wa-worker runs with --discard (no output to count):
# prints {"processed": N} from the worker's wa_worker_jobs_done_total, or nothing (exit 1) while
# its metrics endpoint does not answer. Cheap (curl + awk), so the harness polls it often.
# usage: jobs-done.sh http://127.0.0.1:PORT/metrics
curl -sf --max-time 1 "$1" |
  awk '$1 == "wa_worker_jobs_done_total" { found = 1; print "{\"processed\":" $2 "}" } END { exit !found }'
