#!/usr/bin/env python3
"""Redis CPU per job of the ways a consumer can move a batch of jobs from pending into its
processing list (a measurement, not a test). Needs only python3 and a Redis on 127.0.0.1.

Fills a private list with JOBS copies of a 611-byte contract job, moves them all in batches of
BATCH (each batch also drops the previous one from the processing list, as an acknowledgement
by count would), reads INFO cpu before and after, prints Redis's CPU per job, and deletes its
keys. Ways:
  lua    LRANGE pending + LTRIM + LPUSH processing inside a script (the jobs pass through Lua)
  sort   SORT pending BY nosort LIMIT .. STORE processing inside a script (they do not)
  multi  MULTI, LMOVE x BATCH, EXEC (no script; cannot check a lease)
  lmpop  LMPOP COUNT BATCH: pops without keeping a copy (not reliable; a floor for comparison)
The lua and sort ways read what they took back with LRANGE, pipelined behind the script.

usage: crates/queue/bench/take-ways.py [--port 6379] [--jobs 300000] [--batch 256] [WAY...]
"""
import argparse
import os
import socket
import time


def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""

    def _more(self):
        data = self.sock.recv(1 << 20)
        if not data:
            raise EOFError("redis closed the connection")
        self.buf += data

    def _line(self):
        while b"\r\n" not in self.buf:
            self._more()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._more()
            value, self.buf = self.buf[:n], self.buf[n + 2:]
            return value
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError(line)

    def pipe(self, cmds):
        self.sock.sendall(b"".join(encode(*c) for c in cmds))
        return [self.read() for _ in cmds]

    def cmd(self, *args):
        return self.pipe([args])[0]


def cpu_seconds(r):
    info = r.cmd("INFO", "cpu").decode()
    fields = dict(l.split(":", 1) for l in info.split("\r\n") if ":" in l)
    return float(fields["used_cpu_user"]) + float(fields["used_cpu_sys"])


DROP = """
local d = tonumber(ARGV[1])
if d > 0 then redis.call('LTRIM', KEYS[2], 0, -d - 1) end
"""
SCRIPTS = {
    "lua": DROP + """
local n = tonumber(ARGV[2])
local taken = redis.call('LRANGE', KEYS[1], -n, -1)
if #taken == 0 then return 0 end
redis.call('LTRIM', KEYS[1], 0, -#taken - 1)
local oldest_first = {}
for i = #taken, 1, -1 do oldest_first[#oldest_first + 1] = taken[i] end
redis.call('LPUSH', KEYS[2], unpack(oldest_first))
return #taken
""",
    "sort": DROP + """
local n = tonumber(ARGV[2])
local waiting = redis.call('LLEN', KEYS[1])
if waiting == 0 then return 0 end
n = math.min(n, waiting)
redis.call('SORT', KEYS[1], 'BY', 'nosort', 'LIMIT', waiting - n, n, 'STORE', KEYS[2])
redis.call('LTRIM', KEYS[1], 0, -n - 1)
return n
""",
    "multi": DROP + "return 0",
}
JOB = (
    '{"v":1,"id":"%d","kind":"message","wamid":"wamid.HBgLMTY1MDU1NTAxMjMVAgASGBQzQTdGRDY3MkRF'
    'NEY2NjM2QzQ2RgA=","from":"16505550123","type":"text","text":"hello there, this is a message'
    ' body of moderate length","timestamp":"1700000000","contact_name":"Someone","phone_number_id'
    '":"106540352242922","display_phone_number":"15550001111","waba_id":"102290129340398","recei'
    'ved_at":1700000000123,"attempt":0,"payload":{"from":"16505550123","id":"wamid.HBgLMTY1MDU1N'
    'TAxMjMVAgASGBQzQTdGRDY3MkRFNEY2NjM2QzQ2RgA=","timestamp":"1700000000","text":{"body":"hello'
    ' there, this is a message body of moderate length"},"type":"text"}}'
)


def measure(r, way, jobs, batch):
    base = "take-ways-%d:{q}:" % os.getpid()
    pending, processing = base + "pending", base + "processing"
    r.cmd("DEL", pending, processing)
    for i in range(0, jobs, 1000):
        r.cmd("LPUSH", pending, *[JOB % k for k in range(i, min(i + 1000, jobs))])
    sha = r.cmd("SCRIPT", "LOAD", SCRIPTS[way]).decode() if way in SCRIPTS else None
    keys = (2, pending, processing)
    moved, drop = 0, 0
    c0, t0 = cpu_seconds(r), time.time()
    while moved < jobs:
        if way in ("lua", "sort"):
            n, _ = r.pipe([("EVALSHA", sha, *keys, drop, batch), ("LRANGE", processing, 0, batch - 1)])
        elif way == "multi":
            lmove = ("LMOVE", pending, processing, "RIGHT", "LEFT")
            out = r.pipe([("MULTI",), ("EVALSHA", sha, *keys, drop)] + [lmove] * batch + [("EXEC",)])
            n = sum(1 for j in out[-1][1:] if j is not None)
        else:
            out = r.cmd("LMPOP", 1, pending, "RIGHT", "COUNT", batch)
            n = 0 if out is None else len(out[1])
        if n == 0:
            break
        moved, drop = moved + n, n
    c1, t1 = cpu_seconds(r), time.time()
    r.cmd("DEL", pending, processing)
    print(f"{way:6} {moved} jobs in batches of {batch}: Redis {1e6 * (c1 - c0) / moved:.2f} us/job "
          f"({moved / (t1 - t0):,.0f} jobs/s with this Python client)")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--port", type=int, default=6379)
    p.add_argument("--jobs", type=int, default=300000)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("ways", nargs="*", default=["lua", "sort", "multi", "lmpop", "lua", "sort"])
    a = p.parse_args()
    r = Conn(a.port)
    for way in a.ways:
        measure(r, way, a.jobs, a.batch)


if __name__ == "__main__":
    main()
