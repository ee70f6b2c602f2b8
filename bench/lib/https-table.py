"""The table of bench/https.sh: medians per mode, the spread over repetitions, ratios against
plain HTTP. Usage: python3 bench/lib/https-table.py results.jsonl"""

import json
import statistics
import sys

MODES = (("http", "plain HTTP"), ("https", "HTTPS"), ("mtls", "HTTPS + mutual TLS"))


def main(path):
    rows = [json.loads(line) for line in open(path)]

    def values(mode, key):
        return [r[key] for r in rows if r["mode"] == mode]

    def med(mode, key):
        return statistics.median(values(mode, key))

    def spread(mode, key, scale=1.0, fmt="{:,.0f}"):
        v = values(mode, key)
        return f"{fmt.format(min(v) / scale)}-{fmt.format(max(v) / scale)}"

    base = {k: med("http", k) for k in ("rps", "p99_us", "cpu_us_per_req")}
    print("| mode | req/s (spread) | p50 | p99 (spread) | ingress CPU per request (spread) "
          "| non-2xx + errors | vs plain HTTP: req/s, p99, CPU |")
    print("|---|---|---|---|---|---|---|")
    for mode, name in MODES:
        rps, p50, p99, cpu = (med(mode, k) for k in ("rps", "p50_us", "p99_us", "cpu_us_per_req"))
        bad = sum(r["non_2xx"] + r["errors"] for r in rows if r["mode"] == mode)
        print(
            f"| {name} | {rps:,.0f} ({spread(mode, 'rps')}) | {p50 / 1000:.2f} ms "
            f"| {p99 / 1000:.2f} ms ({spread(mode, 'p99_us', 1000, '{:.1f}')}) "
            f"| {cpu:.1f} us ({spread(mode, 'cpu_us_per_req', 1, '{:.1f}')}) | {bad} "
            f"| {rps / base['rps']:.2f}x, {p99 / base['p99_us']:.2f}x, "
            f"{cpu / base['cpu_us_per_req']:.2f}x |"
        )
    print(f"\nmedians of {len(values('http', 'rps'))} repetitions per mode")


if __name__ == "__main__":
    main(sys.argv[1])
