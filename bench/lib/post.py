#!/usr/bin/env python3
"""Closed-loop load with custom webhook bodies, for the scale curves the shared load
generator cannot make (many notifications per POST, large bodies).

usage: post.py --url URL --secret S [--notifications N] [--text-bytes B] [-c CONNS]
               [-d SECS] [--procs P] [--json FILE]

Every request is one body with N text messages, each with a unique wamid (a per-request
nonce), signed with X-Hub-Signature-256 over the exact bytes. --text-bytes pads each
message's text to about B bytes, to reach large bodies the way Meta does (up to 1000
updates, at most 3 MB). Keep-alive HTTP/1.1 over raw sockets; CONNS connections split
over P processes. Loopback only: the URL must be http://127.x.x.x or localhost.
Prints (and writes with --json) one JSON object: requests, ok (2xx), non_2xx, errors,
rps, notifications_per_s, body_bytes, lat_ms p50/p99/p999.
"""
import asyncio
import hashlib
import hmac
import json
import multiprocessing as mp
import os
import sys
import time
from urllib.parse import urlsplit


def parse():
    a = sys.argv[1:]
    o = {"-c": "16", "-d": "3", "--notifications": "1", "--text-bytes": "40", "--procs": "1"}
    i = 0
    while i < len(a):
        o[a[i]] = a[i + 1]
        i += 2
    return o


def template(n, text_bytes):
    # about text_bytes bytes of mixed-script UTF-8, cut on a character boundary
    pad = ("Olá, 世界! " * (text_bytes // 9 + 1)).encode()[: max(1, text_bytes)].decode(errors="ignore")
    msgs = []
    for i in range(n):
        msgs.append(
            {
                "from": "14155551234",
                "id": f"wamid.scale.@NONCE@.{i}",
                "timestamp": "1795789924",
                "text": {"body": pad},
                "type": "text",
            }
        )
    body = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "changes": [
                    {
                        "value": {
                            "messaging_product": "whatsapp",
                            "metadata": {
                                "display_phone_number": "15550783881",
                                "phone_number_id": "106540352242922",
                            },
                            "contacts": [{"profile": {"name": "Scale Test"}, "wa_id": "14155551234"}],
                            "messages": msgs,
                        },
                        "field": "messages",
                    }
                ],
            }
        ],
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


async def conn_loop(host, port, path, secret, tmpl, prefix, deadline, lats, counts):
    reader = writer = None
    k = 0
    while time.monotonic() < deadline:
        k += 1
        body = tmpl.replace(b"@NONCE@", f"{prefix}{k:x}".encode())
        sig = "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()
        head = (
            f"POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
            f"x-hub-signature-256: {sig}\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode()
        t0 = time.monotonic()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            writer.write(head + body)
            await writer.drain()
            status_line = await asyncio.wait_for(reader.readline(), 30)
            if not status_line:
                raise ConnectionError("closed")
            status = int(status_line.split()[1])
            length = 0
            close = False
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                k_, _, v = line.decode("latin-1").partition(":")
                k_ = k_.strip().lower()
                if k_ == "content-length":
                    length = int(v.strip())
                elif k_ == "connection" and "close" in v.lower():
                    close = True
            if length:
                await reader.readexactly(length)
            lats.append(time.monotonic() - t0)
            counts["ok" if 200 <= status < 300 else "non_2xx"] += 1
            if close:
                writer.close()
                writer = None
        except (OSError, ConnectionError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError, IndexError):
            counts["errors"] += 1
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


def worker(args, q):
    url, secret, n, tb, conns, secs, idx = args
    u = urlsplit(url)
    host, port, path = u.hostname, u.port or 80, u.path or "/"
    if not (host == "localhost" or host.startswith("127.")):
        raise SystemExit("loopback targets only")
    tmpl = template(n, tb)
    lats, counts = [], {"ok": 0, "non_2xx": 0, "errors": 0}
    deadline = time.monotonic() + secs
    run = os.urandom(4).hex()

    async def main():
        await asyncio.gather(
            *(
                conn_loop(host, port, path, secret, tmpl, f"{run}-{idx:x}-{c:x}-", deadline, lats, counts)
                for c in range(conns)
            )
        )

    asyncio.run(main())
    q.put((lats, counts, len(tmpl)))


def main():
    o = parse()
    url, secret = o["--url"], o["--secret"].encode()
    n, tb = int(o["--notifications"]), int(o["--text-bytes"])
    conns, secs, procs = int(o["-c"]), float(o["-d"]), max(1, int(o["--procs"]))
    q = mp.Queue()
    per = [conns // procs + (1 if i < conns % procs else 0) for i in range(procs)]
    ps = [mp.Process(target=worker, args=((url, secret, n, tb, c, secs, i), q)) for i, c in enumerate(per) if c]
    t0 = time.monotonic()
    for p in ps:
        p.start()
    lats, counts, size = [], {"ok": 0, "non_2xx": 0, "errors": 0}, 0
    for _ in ps:
        l, c, size = q.get()
        lats += l
        for k in counts:
            counts[k] += c[k]
    for p in ps:
        p.join()
    wall = time.monotonic() - t0
    lats.sort()
    pct = lambda p: round(lats[min(len(lats) - 1, int(p * len(lats)))] * 1000, 3) if lats else None
    reqs = counts["ok"] + counts["non_2xx"]
    out = {
        "notifications": n,
        "body_bytes": size,
        "conns": conns,
        "duration_s": round(wall, 3),
        "requests": reqs,
        **counts,
        "rps": round(reqs / secs, 1),
        "notifications_per_s": round(counts["ok"] * n / secs, 1),
        "lat_ms": {"p50": pct(0.50), "p99": pct(0.99), "p999": pct(0.999)},
    }
    text = json.dumps(out)
    if "--json" in o:
        with open(o["--json"], "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
