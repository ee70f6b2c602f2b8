"""The tables of bench/cluster.sh: per phase, cluster size and shard count, medians over the
repetitions with their spread (min-max), and what 10 and 100 masters would take at the Redis CPU
per job and master measured on the largest cluster.

Usage: python3 bench/lib/cluster-table.py results.jsonl
       ... | python3 bench/lib/cluster-table.py --brief   (one line per result on stdin)
"""

import json
import statistics
import sys

PHASES = {
    "enqueue": ("enqueue (wa-ingress, --shard-by id)", "ingress"),
    "drain": ("drain (wa-worker run --discard)", "worker"),
    "enqueue-by-sender": ("enqueue (wa-ingress, --shard-by sender)", "ingress"),
    "drain-ordered": ("drain (wa-worker run --discard --ordered)", "worker"),
}


def per_master(r):
    """Redis CPU per job on each master that held jobs (us)."""
    return [n["cpu_us"] / n["jobs"] for n in r["nodes"] if n["jobs"] > 0]


def figures(r):
    jobs = max(r["jobs"], 1)
    return {
        "rate": r["jobs"] / r["secs"],
        "redis": sum(n["cpu_us"] for n in r["nodes"]) / jobs,
        "script": sum(n["script_us"] for n in r["nodes"]) / jobs,
        "calls": sum(n["script_calls"] for n in r["nodes"]) / jobs,
        "master": statistics.median(per_master(r) or [0]),
        "client": r["client_cpu_us"] / jobs,
        "redis_cores": sum(n["cpu_us"] for n in r["nodes"]) / 1e6 / r["secs"],
        "busy": r["busy_cores"],
        "load": r["load1"],
    }


def fmt(values, f="{:,.1f}"):
    med = statistics.median(values)
    if len(values) == 1:
        return f.format(med)
    return f"{f.format(med)} ({f.format(min(values))}-{f.format(max(values))})"


def brief(lines):
    for line in lines:
        r = json.loads(line)
        f = figures(r)
        shares = "/".join(str(n["jobs"]) for n in r["nodes"])
        print(
            f"    {r['phase']:<18} {r['jobs']:>7} jobs {r['secs']:6.2f} s {f['rate']:>8,.0f} jobs/s"
            f"  redis {f['redis']:5.2f} us/job (per master {f['master']:5.2f}; jobs {shares};"
            f" {f['calls']:.3f} script calls/job)"
            f"  {PHASES[r['phase']][1]} {f['client']:5.2f} us/job  busy {f['busy']:.2f} cores"
        )


def table(rows):
    groups = {}
    for r in rows:
        groups.setdefault((r["phase"], r["masters"], r["shards"]), []).append(r)
    for phase, (title, client) in PHASES.items():
        keys = sorted(k for k in groups if k[0] == phase)
        if not keys:
            continue
        print(f"\n### {title}\n")
        print(
            "| masters | shards | jobs/s | Redis CPU per job, all masters (us) "
            "| per master: CPU per job of its jobs (us) | script calls per job "
            "| time in scripts per job (us) "
            f"| Redis cores busy | {client} CPU per job (us) | machine busy (of 2 cores) |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for key in keys:
            rs = groups[key]
            fs = [figures(r) for r in rs]
            col = lambda k, f="{:,.1f}": fmt([x[k] for x in fs], f)  # noqa: E731
            masters = [c for r in rs for c in per_master(r)]
            print(
                f"| {key[1]} | {key[2]} | {col('rate', '{:,.0f}')} | {col('redis', '{:.2f}')} "
                f"| {statistics.median(masters):.2f} ({min(masters):.2f}-{max(masters):.2f}) "
                f"| {col('calls', '{:.3f}')} | {col('script', '{:.2f}')} "
                f"| {col('redis_cores', '{:.2f}')} "
                f"| {col('client', '{:.2f}')} | {col('busy', '{:.2f}')} |"
            )
    reps = max(r["rep"] for r in rows)
    loads = [r["load1"] for r in rows]
    print(
        f"\nmedians of {reps} repetitions (min-max); per master: every master of every "
        f"repetition; load average (1 min) during the run {min(loads):.1f}-{max(loads):.1f}"
    )
    extrapolate(groups)


def extrapolate(groups):
    """Capacity of 10 and 100 masters, one core each, at the per-master CPU per job measured on
    the largest cluster, for a job's whole life (enqueue + drain)."""
    largest = max(k[1] for k in groups)
    print(f"\n### Redis capacity from the CPU per job and master ({largest} masters)\n")
    print(
        "| shards | enqueue + drain, Redis CPU per job on its master (us) "
        "| one master, one core (jobs/s) | 10 masters | 100 masters "
        "| ingress + worker cores for 100 masters |"
    )
    print("|---|---|---|---|---|---|")
    for shards in sorted({k[2] for k in groups if k[1] == largest}):
        life = 0.0
        client = 0.0
        for phase in ("enqueue", "drain"):
            rs = groups.get((phase, largest, shards))
            if not rs:
                return
            life += statistics.median([c for r in rs for c in per_master(r)])
            client += statistics.median([figures(r)["client"] for r in rs])
        one = 1e6 / life
        print(
            f"| {shards} | {life:.2f} | {one:,.0f} | {10 * one:,.0f} | {100 * one:,.0f} "
            f"| {100 * one * client / 1e6:,.0f} |"
        )


if __name__ == "__main__":
    if sys.argv[1:] == ["--brief"]:
        brief(sys.stdin)
    else:
        table([json.loads(line) for line in open(sys.argv[1])])
