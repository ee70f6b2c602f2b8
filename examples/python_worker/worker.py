#!/usr/bin/env python3
"""A wa-webhook worker in plain Python 3 (standard library only).

It follows the queue contract (docs/queue-contract.md) with nothing but a socket, to show that
the contract is language-neutral: any Redis client in any language can take jobs off the queue
the Rust ingress fills, and live next to Rust workers on the same queue.

Run with:
    python3 examples/python_worker/worker.py --redis-url redis://127.0.0.1:6379 --queue whatsapp

For every job it prints one line (kind, id, type, from, text), acknowledges it, and goes on
until Ctrl-C, or until --max-jobs jobs or --idle-exit of silence when those are given. A queue
spread over shards (wa-ingress --shards N) is drained whole: the worker reads the shard count
the queue recorded and takes from every shard in turn. A queue whose workers keep order per
sender (wa-worker --ordered) is refused: this worker does not.

One file of about 550 lines on purpose: an example to copy whole, with no dependencies.
"""

import argparse
import json
import os
import re
import secrets
import signal
import socket
import ssl
import sys
import time
import urllib.parse

CONTRACT_VERSION = 1


class RedisError(Exception):
    """An error reply from Redis (`-ERR ...`)."""


def tls_context(ca_cert, client_cert, client_key):
    """What a rediss:// connection trusts and presents: the CA file (system roots without one)
    and, for a Redis that asks for one, a client certificate and its key."""
    try:
        ctx = ssl.create_default_context(cafile=ca_cert)
    except (OSError, ssl.SSLError) as err:
        raise SystemExit(f"--redis-ca-cert/WA_REDIS_CA_CERT: cannot read {ca_cert}: {err}")
    if client_cert or client_key:
        if not (client_cert and client_key):
            raise SystemExit(
                "--redis-client-cert and --redis-client-key "
                "(WA_REDIS_CLIENT_CERT, WA_REDIS_CLIENT_KEY) go together"
            )
        try:
            ctx.load_cert_chain(client_cert, client_key)
        except (OSError, ssl.SSLError) as err:
            raise SystemExit(
                "--redis-client-cert/--redis-client-key: cannot load "
                f"{client_cert} with {client_key}: {err}"
            )
    return ctx


class Redis:
    """The smallest useful RESP2 client: one connection, one command at a time."""

    def __init__(self, url, timeout, tls=None):
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("redis", "rediss"):
            raise SystemExit(
                f"unsupported Redis URL scheme {u.scheme!r}: use redis:// or rediss:// (TLS)"
            )
        if tls is None and u.scheme == "rediss":
            tls = tls_context(None, None, None)
        self.where = f"{u.hostname or '127.0.0.1'}:{u.port or 6379}"  # never the password
        address = (u.hostname or "127.0.0.1", u.port or 6379)
        try:
            self.sock = socket.create_connection(address, timeout)
            if u.scheme == "rediss":
                # The certificate must chain to the CA and name the URL's host.
                self.sock = tls.wrap_socket(self.sock, server_hostname=address[0])
        except ssl.SSLError as err:
            raise ConnectionError(f"TLS to redis at {self.where} failed: {err}") from None
        except OSError as err:
            raise ConnectionError(f"cannot reach redis at {self.where}: {err}") from None
        self.file = self.sock.makefile("rb")
        if u.password is not None:
            user = [urllib.parse.unquote(u.username)] if u.username else []
            self.call("AUTH", *user, urllib.parse.unquote(u.password))
        if u.path.strip("/"):
            self.call("SELECT", u.path.strip("/"))

    def call(self, *args):
        parts = [b"*%d\r\n" % len(args)]
        for arg in args:
            data = arg if isinstance(arg, bytes) else str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        reply = self._read()
        if isinstance(reply, RedisError):
            raise reply
        return reply

    def _read(self):
        line = self.file.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError(f"connection to redis at {self.where} closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RedisError(rest.decode(errors="replace"))  # raised by call(), kept in arrays
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.file.read(size + 2)[:-2]
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._read() for _ in range(size)]
        raise ConnectionError(f"unexpected reply from redis: {line[:40]!r}")

    def close(self):
        self.sock.close()


def duration(text):
    """Parses a humantime-style duration ("500ms", "2s", "1m", "1h30m") into seconds."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)", text)
    if not parts or re.sub(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)|\s", "", text):
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (try 500ms, 2s, 1m)")
    return sum(float(n) * units[u] for n, u in parts)


def raw_members(text):
    """The top-level members of a JSON object as (key, exact value text) pairs, or None when
    `text` is not a JSON object. Rewriting a job must not re-encode its values: `payload` holds
    Meta's bytes (escapes included) and must stay byte for byte as enqueued."""
    decoder, members, i = json.JSONDecoder(), [], 0

    def skip(i):
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    try:
        i = skip(i)
        if text[i] != "{":
            return None
        i = skip(i + 1)
        while text[i] != "}":
            key, i = decoder.raw_decode(text, i)
            i = skip(i)
            if not isinstance(key, str) or text[i] != ":":
                return None
            start = skip(i + 1)
            _, i = decoder.raw_decode(text, start)
            members.append((key, text[start:i]))
            i = skip(i)
            if text[i] == ",":
                i = skip(i + 1)
                if text[i] == "}":
                    return None
            elif text[i] != "}":
                return None
        return members if skip(i + 1) == len(text) else None
    except (ValueError, IndexError):
        return None


# The scripts below do what docs/queue-contract.md's scripts do, in short.

# settle, for a dead job: remove the exact element from our processing list and, only if it was
# still there (a reaper may have given it back to pending meanwhile), push the entry to dead.
TO_DEAD = """
if redis.call('LREM', KEYS[1], -1, ARGV[1]) > 0 then
  redis.call('LPUSH', KEYS[2], ARGV[2])
  return 1
end
return 0
"""

# promote: retries whose time has come go to the producers' end of pending, earliest first.
PROMOTE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 100)
if #due > 0 then
  redis.call('ZREM', KEYS[1], unpack(due))
  redis.call('LPUSH', KEYS[2], unpack(due))
end
return #due
"""

# release: the contract's script, word for word (docs/queue-contract.md, "Reap"). A consumer's
# jobs in hand go back to the consumers' end of pending (they run next) and its lease is removed.
# A reaper passes force 0, so the lease is re-checked in the same atomic step and a consumer
# that renewed meanwhile keeps its jobs; it also counts each job's delivery as lost with its
# worker (the job's leading "lost" field) and sends a job lost too often to dead, so a job that
# crashes every worker does not go round forever. A stopping consumer passes force 1.
RELEASE = """
-- release: return a consumer's jobs in hand to the consumers' end of pending
-- (oldest in hand goes first) and remove it from the consumers zset.
-- The reaper calls it with force = 0: the lease is re-checked here, atomically,
-- so a consumer that renewed meanwhile keeps its jobs and two reapers never
-- both act. A consumer stopping gracefully calls it with force = 1.
-- A reaped job's delivery was lost with its worker, and that counts as a
-- delivery: the reaper raises the job's `lost` count, which leads the job as
-- its first field ({"lost":N,...}). Only that prefix is rewritten, so the rest
-- of the job (the payload above all) stays byte for byte. A job whose
-- deliveries (attempt + lost) reach max attempts goes to dead instead, with
-- the error "lost with its worker N times". Text that is not a job object goes
-- back unchanged (a consumer sends it to dead when it reads it).
-- KEYS[1]  <prefix>:{<queue>}:consumers
-- KEYS[2]  <prefix>:{<queue>}:pending
-- KEYS[3]  <prefix>:{<queue>}:processing:<consumer>
-- KEYS[4]  <prefix>:{<queue>}:dead
-- KEYS[5]  ordered mode only: <prefix>:{<queue>}:holders
-- KEYS[6]  ordered mode only: <prefix>:{<queue>}:waiting:
-- ARGV[1]  consumer id
-- ARGV[2]  force: '1' release whatever the lease, '0' only if it has lapsed
-- ARGV[3]  max attempts: deliveries before a job goes to dead (force 0 only)
-- returns  {returned to pending, moved to dead}, or {-1} if the lease is live
--          (nothing done)
--
-- Ordered mode: a job returned to pending keeps the hold of its sender (taken
-- again, it passes as the holder, so the sender's later jobs still wait for
-- it); a job sent to dead hands the hold on as an acknowledgement does (see
-- exchange.lua).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[2] ~= '1' then
  local expiry = redis.call('ZSCORE', KEYS[1], ARGV[1])
  if expiry and tonumber(expiry) >= now then
    return {-1}
  end
end
local n = 0
local dead = 0
if ARGV[2] == '1' then
  while redis.call('LMOVE', KEYS[3], KEYS[2], 'LEFT', 'RIGHT') do
    n = n + 1
  end
  redis.call('ZREM', KEYS[1], ARGV[1])
  return {n, dead}
end
local max = tonumber(ARGV[3])
while true do
  local raw = redis.call('LPOP', KEYS[3])
  if not raw then
    break
  end
  local ok, job = pcall(cjson.decode, raw)
  local body = ok and type(job) == 'table' and string.match(raw, '^%s*{(.*)}%s*$')
  local out = raw
  if body then
    local lost = (tonumber(job.lost) or 0) + 1
    local rest = string.match(body, '^%s*"lost":%d+,(.*)$')
    if rest then
      body = '"lost":' .. lost .. ',' .. rest
    elseif job.lost == nil then
      local sep = string.match(body, '^%s*$') and '' or ','
      body = '"lost":' .. lost .. sep .. body
    end
    -- (a `lost` some other writer moved from the front is counted, not rewritten)
    if max and (tonumber(job.attempt) or 0) + lost >= max then
      local times = lost == 1 and ' time' or ' times'
      redis.call('LPUSH', KEYS[4], '{' .. body .. ',"error":"lost with its worker '
        .. lost .. times .. '","died_at":' .. now .. '}')
      dead = dead + 1
      local sender = type(job.from) == 'string' and job.from or job.from_user_id
      if KEYS[6] and type(sender) == 'string' and type(job.id) == 'string'
          and redis.call('HGET', KEYS[5], sender) == job.id then
        local next = redis.call('LPOP', KEYS[6] .. sender)
        if next then
          redis.call('HSET', KEYS[5], sender, cjson.decode(next).id)
          redis.call('RPUSH', KEYS[2], next)
        else
          redis.call('HDEL', KEYS[5], sender)
        end
      end
      out = nil
    else
      out = '{' .. body .. '}'
    end
  end
  if out then
    redis.call('RPUSH', KEYS[2], out)
    n = n + 1
  end
end
redis.call('ZREM', KEYS[1], ARGV[1])
return {n, dead}
"""


class Shard:
    """The keys of one shard of the queue (with one shard, of the queue itself): the contract's
    keys under the hash tag {<queue>:<s>}, or {<queue>} when the queue is not sharded."""

    def __init__(self, prefix, name, consumer):
        self.base = base = f"{prefix}:{{{name}}}"
        self.pending = f"{base}:pending"
        self.processing = f"{base}:processing:{consumer}"
        self.consumers = f"{base}:consumers"
        self.delayed = f"{base}:delayed"
        self.dead = f"{base}:dead"


class Worker:
    def __init__(self, args):
        self.args = args
        # A new id per process: two live processes must never share a processing list.
        self.id = f"py-{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        # Known once connected (the queue's recorded shard count); see shards().
        self.shards = []
        self.turn = 0
        # Renew the lease and do the housekeeping this often: about every second, and at least
        # every third of the lease.
        self.tick = min(1.0, args.lease / 3)
        self.redis = None
        self.tls = None
        if urllib.parse.urlsplit(args.redis_url).scheme == "rediss":
            self.tls = tls_context(args.redis_ca_cert, args.redis_client_cert, args.redis_client_key)
        elif args.redis_ca_cert or args.redis_client_cert or args.redis_client_key:
            raise SystemExit("--redis-ca-cert and the client certificate need a rediss:// URL")
        self.next_tick = 0.0
        self.stopping = False

    def connect(self):
        if self.redis:
            self.redis.close()
        # The socket must outlive the longest blocking call.
        self.redis = Redis(self.args.redis_url, timeout=self.args.block + 10, tls=self.tls)

    def refuse_ordered(self):
        """This worker does not keep order per sender (docs/queue-contract.md, Order per
        sender): it must not run on a queue whose consumers do, or it would take a held
        sender's jobs out of turn and strand the jobs waiting behind the ones it acknowledges."""
        args = self.args
        key = f"{args.prefix}:{{{args.queue}}}:ordered"
        if self.redis.call("GET", key) is not None:
            raise SystemExit(
                f"worker.py: the queue keeps order per sender ({key} is set) and this worker "
                "does not: run wa-worker --ordered on it"
            )

    def load_shards(self):
        """Reads the queue's shard count (`<prefix>:{<queue>}:shards`, absent for a queue of
        one shard) and names each shard's keys: shard s of N > 1 is the queue `<queue>:<s>`."""
        args = self.args
        recorded = self.redis.call("GET", f"{args.prefix}:{{{args.queue}}}:shards")
        n = int(recorded) if recorded else 1
        names = [args.queue] if n == 1 else [f"{args.queue}:{s}" for s in range(n)]
        self.shards = [Shard(args.prefix, name, self.id) for name in names]

    def release_all(self):
        """Returns our jobs in hand in every shard to pending and removes our leases."""
        return sum(self.release(shard, self.id, 1) for shard in self.shards)

    def release(self, shard, consumer, force):
        """Returns `consumer`'s jobs in hand to pending and removes its lease (see RELEASE)."""
        processing = f"{shard.base}:processing:{consumer}"
        returned = self.redis.call(
            "EVAL", RELEASE, 4, shard.consumers, shard.pending, processing, shard.dead,
            consumer, force, self.args.max_attempts,
        )
        return returned[0] if returned else 0

    def housekeeping(self):
        """Renews our lease (on Redis's clock, so hosts whose clocks disagree still agree on
        which lease has lapsed), promotes due retries, and reaps lapsed consumers, in every
        shard, as every consumer of the queue does, so a queue served by Python workers alone
        still recovers."""
        seconds, micros = self.redis.call("TIME")
        now = int(seconds) * 1000 + int(micros) // 1000
        self.next_tick = time.monotonic() + self.tick
        for shard in self.shards:
            self.redis.call("ZADD", shard.consumers, now + int(self.args.lease * 1000), self.id)
            self.redis.call("EVAL", PROMOTE, 2, shard.delayed, shard.pending)
            lapsed = self.redis.call(
                "ZRANGEBYSCORE", shard.consumers, "-inf", f"({now}", "LIMIT", 0, 100
            )
            for consumer in lapsed:
                self.release(shard, consumer.decode(), 0)

    def fetch(self, shard, block):
        """Moves the oldest pending job of `shard` into our processing list there
        (atomically), or None."""
        return self.redis.call(
            "BLMOVE", shard.pending, shard.processing, "RIGHT", "LEFT", f"{block:.3f}"
        )

    def ack(self, shard, raw):
        self.redis.call("LREM", shard.processing, -1, raw)

    def to_dead(self, shard, raw, error):
        """Moves a job from our processing list to dead, with `error` and `died_at` added."""
        text = raw.decode("utf-8", errors="replace")
        fields = raw_members(text)
        kept_whole = fields is None
        fields = [(k, v) for k, v in (fields or []) if k not in ("error", "died_at")]
        fields += [("error", json.dumps(error)), ("died_at", str(int(time.time() * 1000)))]
        if kept_whole:
            # Not a JSON object: keep the text whole inside a new object, never drop it.
            fields.append(("raw", json.dumps(text)))
        entry = "{" + ",".join(json.dumps(k) + ":" + v for k, v in fields) + "}"
        self.redis.call("EVAL", TO_DEAD, 2, shard.processing, shard.dead, raw, entry)

    def handle(self, shard, raw):
        """Prints one line for the job and acknowledges it; sends what we cannot read to dead."""
        try:
            job = json.loads(raw)
        except ValueError as err:
            return self.unreadable(shard, raw, f"job is not JSON: {err}")
        if not isinstance(job, dict):
            return self.unreadable(shard, raw, "job is not a JSON object")
        if job.get("v") != CONTRACT_VERSION:
            # A newer producer's job: park it in dead (replayable) rather than guess at it.
            return self.unreadable(shard, raw, f"unknown contract version {job.get('v')}")
        missing = [f for f in ("id", "kind", "payload") if f not in job]
        if missing:
            return self.unreadable(shard, raw, f"job lacks {', '.join(missing)}")

        line = [str(job["kind"]), f"id={job['id']}"]
        for field in ("type", "from"):
            if job.get(field) is not None:
                line.append(f"{field}={job[field]}")
        if job.get("text") is not None:
            # JSON-quoted, so a text with spaces, quotes or newlines stays on one line.
            line.append("text=" + json.dumps(job["text"], ensure_ascii=False))
        print(" ".join(line), flush=True)
        self.ack(shard, raw)

    def unreadable(self, shard, raw, error):
        self.to_dead(shard, raw, error)
        print(f"moved to dead: {error}", file=sys.stderr, flush=True)

    def run(self):
        args = self.args
        handled = 0
        idle_since = time.monotonic()
        backoff = 0.1
        self.connect()
        self.refuse_ordered()
        self.load_shards()
        self.housekeeping()
        print(f"worker {self.id} on queue {args.queue!r} at {self.redis.where}", file=sys.stderr)
        while not self.stopping and (args.max_jobs is None or handled < args.max_jobs):
            try:
                if time.monotonic() >= self.next_tick:
                    self.housekeeping()
                # Block no longer than the next tick: the lease is renewed before it can lapse.
                block = min(args.block, self.next_tick - time.monotonic())
                if args.idle_exit is not None:
                    left = idle_since + args.idle_exit - time.monotonic()
                    if left <= 0:
                        print(f"idle for {args.idle_exit}s: exiting", file=sys.stderr)
                        break
                    block = min(block, left)
                # Shards in turn, so that none starves: a shard with work answers at once, an
                # empty one holds us for its share of the block time. BLMOVE's timeout 0 would
                # mean "forever": wait at least 10 ms instead.
                shard = self.shards[self.turn % len(self.shards)]
                self.turn += 1
                raw = self.fetch(shard, max(block / len(self.shards), 0.01))
                backoff = 0.1
                if raw is None:
                    continue
                self.handle(shard, raw)
                handled += 1
                idle_since = time.monotonic()
            except (OSError, ConnectionError) as err:
                # Redis restarted or the network blinked: reconnect with backoff. A job taken
                # but not acknowledged stays in our processing list; it goes back to pending
                # now (or by a reaper), so it is delivered again (at least once), never lost.
                print(f"redis unavailable ({err}); retrying in {backoff:.1f}s", file=sys.stderr)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                try:
                    self.connect()
                    self.release_all()
                    self.housekeeping()
                except (OSError, ConnectionError):
                    pass
        # Graceful stop: anything still in hand goes back to pending; the lease is removed.
        returned = self.release_all()
        print(f"handled {handled} job(s), returned {returned}", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379"),
        help="redis://[:password@]host:port[/db], rediss:// for TLS "
        "(env REDIS_URL; default redis://127.0.0.1:6379)",
    )
    parser.add_argument(
        "--redis-ca-cert",
        default=os.environ.get("WA_REDIS_CA_CERT"),
        help="PEM file of the CA(s) Redis's TLS certificate must chain to "
        "(env WA_REDIS_CA_CERT; default the system's roots)",
    )
    parser.add_argument(
        "--redis-client-cert",
        default=os.environ.get("WA_REDIS_CLIENT_CERT"),
        help="PEM client certificate for a Redis that asks for one (env WA_REDIS_CLIENT_CERT)",
    )
    parser.add_argument(
        "--redis-client-key",
        default=os.environ.get("WA_REDIS_CLIENT_KEY"),
        help="PEM key of --redis-client-cert (env WA_REDIS_CLIENT_KEY)",
    )
    parser.add_argument(
        "--queue",
        default=os.environ.get("WA_QUEUE", "whatsapp"),
        help="queue name, as the ingress's WA_QUEUE (env WA_QUEUE; default whatsapp)",
    )
    parser.add_argument("--prefix", default="wa", help="key prefix (default wa)")
    parser.add_argument("--lease", type=duration, default=30.0, help="lease length (default 30s)")
    parser.add_argument(
        "--max-attempts",
        type=int,
        default=5,
        help="deliveries (lost ones included) before the reaper sends a job to dead (default 5)",
    )
    parser.add_argument(
        "--block", type=duration, default=2.0, help="longest wait per fetch (default 2s)"
    )
    parser.add_argument("--max-jobs", type=int, help="exit after this many jobs")
    parser.add_argument("--idle-exit", type=duration, help="exit after this long without a job")
    args = parser.parse_args()
    if args.lease < 0.3:
        parser.error("--lease must be at least 300ms")

    worker = Worker(args)

    def stop(_signum, _frame):
        worker.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        worker.run()
    except (OSError, ConnectionError, RedisError) as err:
        print(f"worker failed: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
