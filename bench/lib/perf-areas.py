#!/usr/bin/env python3
"""Percent of a wa-ingress profile's samples per area of the code.

Reads `perf script` output (call graphs recorded with `--call-graph dwarf`) on stdin. A
sample's area is decided by its stack: allocation and kernel work by the leaf frame (the
kernel split into network, scheduling and the rest), everything else by the innermost frame
of our own crates or of a library we can name; a copy (`memmove`) goes to whoever called it.
Prints a markdown table, areas by share, and the samples counted; with --freq (perf record
-F) and --requests (answered while perf recorded), each area's CPU time per request too.
"""

import argparse
import collections
import re
import sys

# (area, pattern on a frame's symbol), tried innermost frame first.
AREAS = [
    ("HMAC (wa-signature, ring)", r"wa_signature|ring_core|\bring::"),
    ("JSON walk (wa-payload)", r"wa_payload"),
    ("job encoding (NewJob, serde_json)", r"wa_queue::job|serde_json|wa_webhook::jobs|itoa|ryu"),
    ("dedup marker", r"wa_queue::dedup"),
    ("redis-rs (command encoding, reply parsing)", r"\bredis::|combine::"),
    ("producer and dispatcher", r"wa_queue::producer|wa_queue::script|wa_queue::conn"),
    ("metrics", r"wa_webhook::metrics"),
    ("tracing", r"\btracing"),
    ("endpoint (route, post, body)", r"wa_webhook::"),
    ("hyper / HTTP", r"hyper|httparse|\bhttp::|http_body"),
    ("tokio runtime (tasks, timers, I/O driver, sync)", r"tokio|mio::|futures_util|futures_core"),
]
ALLOC = re.compile(
    r"^(malloc|free|cfree|calloc|realloc|_int_malloc|_int_free|_int_realloc|"
    r"malloc_consolidate|unlink_chunk|tcache|__libc_malloc|__libc_free|__rust_alloc|"
    r"__rust_dealloc|__rust_realloc|alloc::alloc|mi_|_mi_|mimalloc)"
)
COPY = re.compile(r"^__mem(move|cpy|set)|^memcpy|^memmove|^memset")
SCHED = re.compile(
    r"schedule|finish_task_switch|futex|epoll|ep_poll|try_to_wake_up|pick_next|"
    r"enqueue_task|dequeue_task|__x64_sys_sched_yield|do_nanosleep|hrtimer"
)
NET = re.compile(r"tcp_|sock_|inet_|ip_|__dev_queue|net_rx|napi|skb|__sys_(send|recv)|_copy_(to|from)_iter|writev|readv|sys_(read|write)|vfs_(read|write)")
COMPILED = [(area, re.compile(p)) for area, p in AREAS]


def samples(lines):
    frames = []
    for line in lines:
        line = line.rstrip("\n")
        if not line.strip():
            if frames:
                yield frames
            frames = []
            continue
        if line.startswith("\t") or line.startswith(" "):
            parts = line.split(None, 1)
            if len(parts) == 2:
                sym, _, dso = parts[1].rpartition(" (")
                sym = re.sub(r"\+0x[0-9a-f]+$", "", sym)
                frames.append((sym, dso.rstrip(")")))
        # a header line starts a sample; its frames follow
    if frames:
        yield frames


def area_of(frames):
    leaf, dso = frames[0]
    if "kernel" in dso:
        syms = " ".join(s for s, d in frames if "kernel" in d)
        if SCHED.search(syms) and not NET.search(syms):
            return "kernel: scheduling, wake-ups, epoll, futex"
        if NET.search(syms):
            return "kernel: TCP send/receive"
        return "kernel: other"
    if ALLOC.search(leaf):
        return "allocation (malloc/free)"
    for sym, _ in frames:
        for area, pattern in COMPILED:
            if pattern.search(sym):
                return area
    if COPY.search(leaf):
        return "copies (memmove) outside the areas above"
    return "other (libc, unresolved)"


def main():
    args = argparse.ArgumentParser(description=__doc__)
    args.add_argument("--freq", type=float, help="the sampling frequency (perf record -F)")
    args.add_argument("--requests", type=int, help="requests answered while perf recorded")
    args = args.parse_args()
    counts = collections.Counter(area_of(f) for f in samples(sys.stdin) if f)
    total = sum(counts.values())
    # Every sample stands for 1/freq s of CPU: with the requests answered meanwhile, each
    # area's CPU per request (under perf, which slows everything a little).
    per_req = None
    if args.freq and args.requests:
        per_req = 1e6 / args.freq / args.requests
    print("| area | share of samples |" + (" CPU per request |" if per_req else ""))
    print("|---|---|" + ("---|" if per_req else ""))
    for area, n in counts.most_common():
        extra = f" {n * per_req:.2f} us |" if per_req else ""
        print(f"| {area} | {100 * n / total:.1f} % |{extra}")
    tail = f", {total * per_req:.1f} us of CPU per request under perf" if per_req else ""
    print(f"\n{total} samples{tail}")


if __name__ == "__main__":
    main()
