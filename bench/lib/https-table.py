"""The table of bench/https.sh (and bench/redis.sh): medians per mode, the spread over
repetitions, ratios against the first mode.
Usage: python3 bench/lib/https-table.py results.jsonl [mode=label ...]"""

import json
import statistics
import sys

MODES = (("http", "plain HTTP"), ("https", "HTTPS"), ("mtls", "HTTPS + mutual TLS"))


def main(path, modes=MODES):
    first = modes[0][0]
    rows = [json.loads(line) for line in open(path)]

    def values(mode, key):
        return [r[key] for r in rows if r["mode"] == mode]

    def med(mode, key):
        return statistics.median(values(mode, key))

    def spread(mode, key, scale=1.0, fmt="{:,.0f}"):
        v = values(mode, key)
        return f"{fmt.format(min(v) / scale)}-{fmt.format(max(v) / scale)}"

    base = {k: med(first, k) for k in ("rps", "p99_us", "cpu_us_per_req")}
    print("| mode | req/s (spread) | p50 | p99 (spread) | ingress CPU per request (spread) "
          f"| non-2xx + errors | vs {modes[0][1]}: req/s, p99, CPU |")
    print("|---|---|---|---|---|---|---|")
    for mode, name in modes:
        rps, p50, p99, cpu = (med(mode, k) for k in ("rps", "p50_us", "p99_us", "cpu_us_per_req"))
        bad = sum(r["non_2xx"] + r["errors"] for r in rows if r["mode"] == mode)
        print(
            f"| {name} | {rps:,.0f} ({spread(mode, 'rps')}) | {p50 / 1000:.2f} ms "
            f"| {p99 / 1000:.2f} ms ({spread(mode, 'p99_us', 1000, '{:.1f}')}) "
            f"| {cpu:.1f} us ({spread(mode, 'cpu_us_per_req', 1, '{:.1f}')}) | {bad} "
            f"| {rps / base['rps']:.2f}x, {p99 / base['p99_us']:.2f}x, "
            f"{cpu / base['cpu_us_per_req']:.2f}x |"
        )
    print(f"\nmedians of {len(values(first, 'rps'))} repetitions per mode")


if __name__ == "__main__":
    pairs = tuple(tuple(a.split("=", 1)) for a in sys.argv[2:])
    main(sys.argv[1], pairs or MODES)
