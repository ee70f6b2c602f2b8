#!/usr/bin/env python3
"""Stats command for the shared harness, for wa-worker.

usage: stats.py --metrics URL --jobs FILE

Prints one JSON object the way run-baseline.sh wants it:
  processed  jobs the worker finished since it started: its Prometheus jobs-done
             counter (falls back to the number of lines its stdout handler wrote)
  lines      lines in FILE (one per job handled by the --stdout handler)
  unique / duplicates   distinct job ids in FILE; only computed once FILE has stopped
             growing between two calls (it is a full read), so the final call of a
             phase has them
  last_ms    FILE's modification time (epoch ms): when the last job was written

Exits 1 without output while the metrics endpoint does not answer: the harness
polls this command to know that the worker is up.
"""
import json
import os
import re
import sys
import urllib.request

args = sys.argv[1:]
opts = dict(zip(args[::2], args[1::2]))
metrics_url = opts.get("--metrics")
jobs = opts.get("--jobs")

try:
    with urllib.request.urlopen(metrics_url, timeout=2) as r:
        text = r.read().decode("utf-8", "replace")
except Exception:
    sys.exit(1)

# The worker's "jobs done" counter. Any name containing "done" with an optional
# outcome label is accepted, so a renamed metric does not silently read zero.
done = None
for line in text.splitlines():
    if line.startswith("#"):
        continue
    m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+([0-9.eE+-]+)$', line)
    if not m:
        continue
    name, labels, value = m.group(1), m.group(2) or "", m.group(3)
    if ("done" in name and "jobs" in name) or ("jobs" in name and 'outcome="done"' in labels):
        done = (done or 0) + int(float(value))

out = {}
lines = 0
size = 0
if jobs and os.path.exists(jobs):
    st = os.stat(jobs)
    size = st.st_size
    out["last_ms"] = int(st.st_mtime * 1000) if size else None
    with open(jobs, "rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
    out["lines"] = lines
    # unique ids only once the file is stable (compared with the previous call)
    state = jobs + ".size"
    prev = None
    if os.path.exists(state):
        try:
            prev = int(open(state).read().strip() or -1)
        except ValueError:
            prev = None
    with open(state, "w") as f:
        f.write(str(size))
    if prev == size and size:
        ids = set()
        n = 0
        with open(jobs, "rb") as f:
            for raw in f:
                n += 1
                try:
                    ids.add(json.loads(raw)["id"])
                except Exception:
                    pass
        out["unique"] = len(ids)
        out["duplicates"] = n - len(ids)
out["processed"] = done if done is not None else lines
print(json.dumps({k: v for k, v in out.items() if v is not None}))
