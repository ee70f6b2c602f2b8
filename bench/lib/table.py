#!/usr/bin/env python3
"""Renders the side-by-side table of bench/run.sh from the harness's result folders.

usage: table.py OUT_DIR

Reads OUT_DIR/{node,ours}-rep<N>/ (run-baseline.sh output folders, one phase-a rep
each), takes the median over repetitions of each figure and prints a markdown table:
ours, reference, ours / reference, and how many times better ours is.
"""
import json
import math
import os
import statistics
import sys

out = sys.argv[1]


def load(d, name):
    p = os.path.join(d, name)
    try:
        with open(p) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def reps(side):
    ds = []
    i = 1
    while os.path.isdir(os.path.join(out, f"{side}-rep{i}")):
        ds.append(os.path.join(out, f"{side}-rep{i}"))
        i += 1
    return ds


def figures(d):
    f = {}
    a = load(d, "a-rep1.json")
    ap = (load(d, "a-rep1-procs.json") or {}).get("procs", {})
    if a and a.get("rps"):
        f["rps"] = a["rps"]
        f["p50"] = a["lat_us"]["p50"] / 1000
        f["p99"] = a["lat_us"]["p99"] / 1000
        f["p999"] = a["lat_us"]["p999"] / 1000
        f["non2xx_a"] = a["non_2xx"] + a["errors"]
        for n in ("ingress", "redis"):
            c = ap.get(n, {}).get("cores")
            if isinstance(c, (int, float)):
                f[f"{n}_us"] = c / a["rps"] * 1e6
        r = ap.get("ingress", {}).get("rss_peak_mib")
        if isinstance(r, (int, float)):
            f["rss"] = r
    b = load(d, "b-e2e.json")
    if b:
        st = b.get("stats", {})
        e2e = b["elapsed_s"]
        if st.get("last_ms") and b.get("t0_ms"):
            e2e = (st["last_ms"] - b["t0_ms"]) / 1000
        if e2e > 0:
            f["e2e"] = b["processed"] / e2e
        f["e2e_lost"] = b["burst"] - b["processed"]
        bp = (load(d, "b-procs.json") or {}).get("procs", {})
        r = bp.get("ingress", {}).get("rss_peak_mib")
        if isinstance(r, (int, float)):
            f["rss_e2e"] = r
        r = bp.get("worker", {}).get("rss_peak_mib")
        if isinstance(r, (int, float)):
            f["worker_rss"] = r
    dr = load(d, "drain.json")
    if dr:
        # Same measure for both sides: jobs over the time from spawning the worker (t0, its
        # start-up included) to the last job done (the worker's own timestamp for the
        # reference, the mtime of our worker's output file for ours). The harness's own
        # elapsed_s (when its polling saw the count) is the fallback.
        st = dr.get("stats", {})
        span = dr["elapsed_s"]
        if st.get("last_ms") and dr.get("t0_ms") and st["last_ms"] > dr["t0_ms"]:
            span = (st["last_ms"] - dr["t0_ms"]) / 1000
        if span > 0:
            f["drain"] = dr["processed"] / span
        if st.get("first_ms") and st.get("last_ms") and st["last_ms"] > st["first_ms"]:
            f["drain_first_last"] = dr["processed"] / ((st["last_ms"] - st["first_ms"]) / 1000)
    o = load(d, "outage.json")
    lg = load(d, "outage-load.json")
    if o and lg:
        st = o.get("stats", {})
        uniq = int(st.get("unique", o["processed"]))
        f["outage_ok"] = lg["ok_2xx"]
        # 2xx in the whole seconds strictly between "Redis has exited" and "Redis restarted":
        # what an ingress acknowledged while it could store nothing.
        tl = lg.get("timeline", [])
        lo, hi = math.ceil(o.get("t_stopped_s", o["t_stop_s"])), math.floor(o["t_restart_s"])
        f["outage_ok_down"] = sum(t[0] for s, t in enumerate(tl) if lo <= s and s + 1 <= hi)
        f["outage_lost"] = max(0, lg["ok_2xx"] - uniq)
        op = (load(d, "outage-procs.json") or {}).get("procs", {}).get("ingress", {})
        if op.get("rss_peak_mib") is not None:
            f["outage_rss"] = op["rss_peak_mib"] - op.get("rss_start_mib", 0)
    return f


def noop_drain(d):
    dr = load(d, "drain.json")
    if dr and dr["elapsed_s"] > 0:
        # Both sides the same way: from spawning the worker until the harness's polling saw
        # the last job done (no output file to time ours by).
        return {"noop_drain": dr["processed"] / dr["elapsed_s"], "noop_burst": dr["burst"]}
    return {}


def med(side, key):
    if key.startswith("noop_"):
        xs = [noop_drain(d).get(key) for d in reps(f"{side}-noop")]
    else:
        xs = [figures(d).get(key) for d in reps(side)]
    xs = [x for x in xs if x is not None]
    return (statistics.median(xs), len(xs)) if xs else (None, 0)


ROWS = [
    # key, label, unit, higher is better, format
    ("rps", "throughput (phase a)", "req/s", True, "{:.0f}"),
    ("p50", "latency p50", "ms", False, "{:.2f}"),
    ("p99", "latency p99", "ms", False, "{:.2f}"),
    ("p999", "latency p99.9", "ms", False, "{:.2f}"),
    ("ingress_us", "ingress CPU per request", "us", False, "{:.1f}"),
    ("redis_us", "Redis CPU per request", "us", False, "{:.1f}"),
    ("rss", "ingress peak RSS under load (phase a)", "MiB", False, "{:.1f}"),
    ("rss_e2e", "ingress peak RSS, end-to-end burst", "MiB", False, "{:.1f}"),
    ("e2e", "end to end: first request to last job done (phase b)", "msg/s", True, "{:.0f}"),
    ("drain", "drain: worker spawn to last job done", "jobs/s", True, "{:.0f}"),
    ("noop_drain", "drain with no-op handlers (--noop-drain backlog)", "jobs/s", True, "{:.0f}"),
    ("worker_rss", "worker peak RSS, end-to-end burst", "MiB", False, "{:.1f}"),
    ("e2e_lost", "burst messages not processed (phase b)", "", False, "{:.0f}"),
    ("outage_ok", "outage run: 2xx answers in all", "", None, "{:.0f}"),
    ("outage_ok_down", "outage run: 2xx answered while Redis was down", "", False, "{:.0f}"),
    ("outage_lost", "outage run: 2xx never processed (Redis restarts empty, see note)", "", None, "{:.0f}"),
    ("outage_rss", "outage run: ingress RSS growth", "MiB", False, "{:.1f}"),
]

with open(os.path.join(out, "env.txt")) as f:
    env = f.read()
print("```\n" + env + "```\n")
n_ours, n_node = len(reps("ours")), len(reps("node"))
print(f"Medians over {n_ours} (ours) and {n_node} (reference) interleaved repetitions.\n")
print("| figure | unit | ours | Node reference | ours / ref | better by |")
print("|---|---|---|---|---|---|")
for key, label, unit, hib, fmt in ROWS:
    o, _ = med("ours", key)
    r, _ = med("node", key)
    if o is None and r is None:
        continue
    so = fmt.format(o) if o is not None else "n/a"
    sr = fmt.format(r) if r is not None else "n/a"
    ratio = better = ""
    if o is not None and r is not None and hib is not None:
        if r:
            ratio = f"{o / r:.3g}"
        if hib and r and o:
            better = f"{o / r:.1f}x"
        elif not hib and o and r:
            better = f"{r / o:.1f}x"
        elif not hib and o == 0 and r:
            better = "ours is 0"
    print(f"| {label} | {unit} | {so} | {sr} | {ratio} | {better} |")
if med("ours", "outage_lost")[0] is not None:
    print(
        "\nOutage run: the harness restarts Redis *empty* (no persistence), so jobs still queued in"
        " Redis when it stops are lost whatever the ingress does; a faster ingress has more of them"
        " queued. What the ingress itself decides is the row before: whether it says 200 while"
        " nothing can be stored (and then holds those messages in memory only)."
    )
n_first_last = med("node", "drain_first_last")[0]
if n_first_last:
    print(f"\nReference worker from its first to its last job (start-up excluded; ours has no such timestamp): {n_first_last:.0f} jobs/s.")
