#!/usr/bin/env python3
"""Tables and PNG plots of bench/scale.sh results.

usage: plot.py RESULTS_DIR PNG_DIR

Prints one markdown table per curve found in RESULTS_DIR and, when matplotlib can be
imported, writes PNG_DIR/{conns,notifications,body,backlog}.png.
"""
import bisect
import json
import os
import sys

res, png = sys.argv[1], sys.argv[2]
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    plt = None
    print("(matplotlib not installed: tables only; pip install matplotlib)\n", file=sys.stderr)


def rows(curve):
    p = os.path.join(res, f"{curve}.jsonl")
    if not os.path.exists(p):
        return []
    with open(p) as f:
        return [json.loads(line) for line in f if line.strip()]


def requests(r):
    l = r["load"]
    return l.get("completed", l.get("requests", 0))


def notifications(r):
    l = r["load"]
    return l.get("ok", l.get("ok_2xx", 0)) * l.get("notifications", 1)


def cpu_us(r, name, count):
    """CPU microseconds of process `name` per unit of `count` over the whole load."""
    c = r.get("cpu_s", {}).get(name)
    return c / count * 1e6 if isinstance(c, (int, float)) and count else None


def lat(r, q):
    l = r["load"]
    if "lat_us" in l:
        return l["lat_us"][q] / 1000
    return l["lat_ms"][{"p50": "p50", "p99": "p99", "p999": "p999"}[q]]


def fmt(v, f="{:.1f}"):
    return f.format(v) if isinstance(v, (int, float)) else "n/a"


def save(fig, name):
    os.makedirs(png, exist_ok=True)
    fig.tight_layout()
    fig.savefig(os.path.join(png, name), dpi=110)
    plt.close(fig)


env = open(os.path.join(res, "env.txt")).read() if os.path.exists(os.path.join(res, "env.txt")) else ""
print("```\n" + env + "```\n")

# ---------------------------------------------------------------- connections
rs = rows("conns")
if rs:
    print("### Connections (~800-byte text webhooks, wa-loadgen)\n")
    print("| connections | req/s | p50 ms | p99 ms | p99.9 ms | non-2xx+errors | ingress CPU us/req | Redis CPU us/req | ingress RSS peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rs:
        l = r["load"]
        ing = r["procs"].get("procs", {}).get("ingress", {})
        print(f"| {int(r['x'])} | {l['rps']:.0f} | {lat(r,'p50'):.2f} | {lat(r,'p99'):.2f} | {lat(r,'p999'):.2f} | {l['non_2xx'] + l['errors']} | {fmt(cpu_us(r,'ingress',requests(r)))} | {fmt(cpu_us(r,'redis',requests(r)))} | {fmt(ing.get('rss_peak_mib'))} |")
    print()
    if plt:
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        x = [r["x"] for r in rs]
        ax[0].plot(x, [r["load"]["rps"] for r in rs], "o-")
        ax[0].set(xscale="log", xlabel="connections", ylabel="requests/s", title="throughput")
        ax[0].set_ylim(bottom=0)
        for q in ("p50", "p99"):
            ax[1].plot(x, [lat(r, q) for r in rs], "o-", label=q)
        ax[1].set(xscale="log", yscale="log", xlabel="connections", ylabel="ms", title="latency")
        ax[1].legend()
        save(fig, "conns.png")

# ---------------------------------------------------------------- notifications / body
for curve, title in (("notifications", "Notifications per POST (text messages, ~160 B each)"), ("body", "Body size (messages of up to ~3 KB)")):
    rs = rows(curve)
    if not rs:
        continue
    print(f"### {title}\n")
    print("| notifications | body bytes | req/s | notifications/s | MB/s | p50 ms | p99 ms | non-2xx+errors | ingress CPU us/req | ingress CPU us/notification | Redis CPU us/notification | ingress RSS peak MiB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rs:
        l = r["load"]
        n = l["notifications"]
        ing = r["procs"].get("procs", {}).get("ingress", {})
        nps = l["notifications_per_s"]
        print(f"| {n} | {l['body_bytes']} | {l['rps']:.0f} | {nps:.0f} | {l['rps']*l['body_bytes']/1e6:.1f} | {fmt(lat(r,'p50'),'{:.2f}')} | {fmt(lat(r,'p99'),'{:.2f}')} | {l['non_2xx'] + l['errors']} | {fmt(cpu_us(r,'ingress',requests(r)))} | {fmt(cpu_us(r,'ingress',notifications(r)),'{:.2f}')} | {fmt(cpu_us(r,'redis',notifications(r)),'{:.2f}')} | {fmt(ing.get('rss_peak_mib'))} |")
    print()
    if plt:
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        if curve == "notifications":
            x = [r["load"]["notifications"] for r in rs]
            xl = "notifications per POST"
            ax[0].plot(x, [r["load"]["notifications_per_s"] for r in rs], "o-")
            ax[0].set(ylabel="notifications/s enqueued", title="notification throughput")
        else:
            x = [r["load"]["body_bytes"] / 1e6 for r in rs]
            xl = "body size (MB)"
            ax[0].plot(x, [r["load"]["rps"] * r["load"]["body_bytes"] / 1e6 for r in rs], "o-")
            ax[0].set(ylabel="MB/s of bodies accepted", title="byte throughput")
        ax[0].set(xscale="log", xlabel=xl)
        ax[0].set_ylim(bottom=0)
        ax[1].plot(x, [cpu_us(r, "ingress", notifications(r)) for r in rs], "o-", label="ingress")
        ax[1].plot(x, [cpu_us(r, "redis", notifications(r)) for r in rs], "o-", label="redis")
        ax[1].set(xscale="log", xlabel=xl, ylabel="CPU us per notification", title="cost per notification")
        ax[1].set_ylim(bottom=0)
        ax[1].legend()
        save(fig, f"{curve}.png")

# ---------------------------------------------------------------- backlog
def samples(name):
    p = os.path.join(res, name)
    if not os.path.exists(p):
        return []
    out = []
    for line in open(p):
        a = line.split()
        if len(a) == 2 and a[1].isdigit():
            out.append((int(a[0]), int(a[1])))
    return out


enq = samples("backlog-enqueue-llen.txt")
drn = samples("backlog-drain-llen.txt")
lg = None
if os.path.exists(os.path.join(res, "backlog-enqueue.json")):
    lg = json.load(open(os.path.join(res, "backlog-enqueue.json")))
if enq and lg:
    t0 = int(open(os.path.join(res, "backlog-enqueue-t0.txt")).read())
    ts = [t for t, _ in enq]
    pts = []  # (backlog at the end of the second, 2xx in that second)
    for s, (ok, _, _) in enumerate(lg.get("timeline", [])):
        i = bisect.bisect_left(ts, t0 + (s + 1) * 1000)
        if i < len(enq):
            pts.append((enq[i][1], ok))
    pts = [p for p in pts if p[1] > 0]
    # drain: per ~1 s window, jobs removed and the backlog at its start
    dpts = []
    i = 0
    while i < len(drn):
        j = bisect.bisect_left([t for t, _ in drn], drn[i][0] + 1000)
        if j >= len(drn):
            break
        if drn[i][1] > 0:
            dpts.append((drn[i][1], (drn[i][1] - drn[j][1]) / ((drn[j][0] - drn[i][0]) / 1000)))
        i = j
    dpts = [p for p in dpts if p[1] > 0]
    print(f"### Queue backlog (enqueue through the ingress with no worker, then drain with `wa-worker --discard`)\n")
    print(f"- enqueue: {lg['ok_2xx']} x 2xx, {lg['non_2xx']} non-2xx, {lg['errors']} errors in {lg['duration_s']:.1f} s ({lg['rps']:.0f} req/s overall)")
    if pts:
        first, last = pts[: max(1, len(pts) // 5)], pts[-max(1, len(pts) // 5):]
        avg = lambda xs: sum(v for _, v in xs) / len(xs)
        print(f"- enqueue rate, first fifth of the run (backlog {first[0][0]}..{first[-1][0]}): {avg(first):.0f}/s; last fifth (backlog {last[0][0]}..{last[-1][0]}): {avg(last):.0f}/s")
    if dpts:
        first, last = dpts[: max(1, len(dpts) // 5)], dpts[-max(1, len(dpts) // 5):]
        avg = lambda xs: sum(v for _, v in xs) / len(xs)
        span = (drn[-1][0] - drn[0][0]) / 1000
        total = drn[0][1]
        print(f"- drain rate at backlog {first[0][0]}..{first[-1][0]}: {avg(first):.0f} jobs/s; at backlog {last[0][0]}..{last[-1][0]}: {avg(last):.0f} jobs/s")
        dp = os.path.join(res, "backlog-drain-procs.json")
        if os.path.exists(dp):
            d = json.load(open(dp)).get("procs", {})
            print("- during the drain: " + ", ".join(f"{k} {v.get('cores')} cores, RSS peak {v.get('rss_peak_mib')} MiB" for k, v in d.items()))
    mem = os.path.join(res, "backlog-redis-mem.txt")
    if os.path.exists(mem):
        print(f"- Redis memory with the full backlog: {open(mem).read().strip()}")
    print()
    if plt:
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        ax[0].plot([p[0] for p in pts], [p[1] for p in pts], "o-", ms=3)
        ax[0].set(xlabel="jobs pending", ylabel="requests/s answered 200", title="enqueue rate vs backlog")
        ax[0].set_ylim(bottom=0)
        ax[1].plot([p[0] for p in dpts], [p[1] for p in dpts], "o-", ms=3)
        ax[1].set(xlabel="jobs pending", ylabel="jobs/s drained", title="drain rate vs backlog")
        ax[1].set_ylim(bottom=0)
        ax[1].invert_xaxis()
        save(fig, "backlog.png")
