#!/usr/bin/env bash
# Instructions Redis executes per enqueued job (a measurement, not a test): the enqueue script of
# each given revision, run by a redis-server under valgrind's callgrind, which counts the
# instructions the server executes in user space. Unlike CPU time, the count hardly changes with
# the machine's other load, so it tells scripts apart by a few percent where timings on a shared
# machine cannot; it leaves out the kernel (socket reads and writes) and cache misses. The same
# stream of calls for every revision: CALLS script calls of BATCH jobs (about 600 bytes of JSON
# each, fresh ids, one `seen:` key each), sent pipelined by `redis-cli --pipe`, all stamped in
# one minute, or with RATE=n as if n notifications a second were sent. A run of 300 calls of 21
# takes about half a minute per revision.
#
# Usage: [RATE=n] [LEGACY=1] bench/enqueue-instructions.sh CALLS BATCH REV|FILE...
#   e.g. bench/enqueue-instructions.sh 300 21 a83d53d d8a1996 HEAD bench/lib/enqueue-push-only.lua
# A FILE is a script taking enqueue.lua's arguments (bench/lib/enqueue-push-only.lua: the push
# alone, a floor).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
calls=$1 batch=$2
shift 2
dir=$(mktemp -d)
vpid=
cleanup() {
  [ -n "$vpid" ] && kill "$vpid" 2>/dev/null && wait "$vpid" 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT

# The calls, in Redis's protocol, for the script of the given layout and SHA1: keys (one `seen:` key per
# job, ARGV = ttl, jsons), tree (dedup base, then json ttl slot route digest per job), intset
# (dedup base, then json ttl slot marker per job), intset-nokeys (the same without the `seen:`
# keys, which the script looks for only until the queue's `seen-until` record says none can be
# left: the bench writes that record as `legacy.lua` does for a queue without any, unless
# LEGACY=1, which leaves it out so that the script looks for every job's `seen:` key) or runs
# (dedup base, the runs of jobs sharing a TTL and a slot, then json marker per job; no `seen:`
# keys either).
generate() {
  python3 - "$1" "$2" "$calls" "$batch" "${RATE:-0}" <<'PY'
import hashlib, sys, time
layout, sha = sys.argv[1], sys.argv[2]
calls, batch, rate = int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
start = int(time.time())
q = 'wa:{bench}:'
body = ('hola order shoes tracking entrega blue ' * 12)[:410]
out = sys.stdout.buffer
def cmd(args):
    out.write(b'*%d\r\n' % len(args))
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.write(b'$%d\r\n%s\r\n' % (len(a), a))
for c in range(calls):
    keys, argv = [q + 'pending'], [691200 if layout == 'keys' else q + 'dedup:']
    runs = []
    for j in range(batch):
        n = c * batch + j
        wid = 'wamid.bench.%d' % n
        sent = start + (n // rate if rate else 0)
        if layout not in ('intset-nokeys', 'runs'):
            keys.append(q + 'seen:' + wid)
        h = hashlib.sha256(wid.encode()).digest()
        js = ('{"v":1,"id":"%s","kind":"message","wamid":"%s","from":"15551234567","type":"text",'
              '"timestamp":"%d","received_at":%d000,"attempt":0,"payload":{"from":"15551234567",'
              '"id":"%s","timestamp":"%d","type":"text","text":{"body":"%s"}}}'
              % (wid, wid, sent, start, wid, sent, body))
        slot = 'm%d' % (sent // 60)
        if layout == 'keys':
            argv.append(js)
        elif layout == 'tree':
            argv += [js, 691200, slot, h[8:16].hex(), h[:8]]
        elif layout == 'runs':
            runs.append(slot)
            argv += [js, int.from_bytes(h[:8], 'big', signed=True) or 1]
        else:
            argv += [js, 691200, slot, int.from_bytes(h[:8], 'big', signed=True) or 1]
    if layout == 'runs':
        spec = []
        for slot in runs:
            if spec and spec[-1][1] == slot:
                spec[-1][0] += 1
            else:
                spec.append([1, slot])
        argv.insert(1, ' '.join('%d:691200:%s' % (k, slot) for k, slot in spec))
    cmd(['EVALSHA', sha, len(keys)] + keys + argv)
PY
}

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
for rev in "$@"; do
  if [ -f "$rev" ]; then
    cp "$rev" "$dir/enqueue.lua"
  else
    git show "$rev:crates/queue/src/lua/enqueue.lua" >"$dir/enqueue.lua"
  fi
  layout=intset
  grep -q 'five per job' "$dir/enqueue.lua" && layout=tree
  grep -q 'ARGV\[1\]      dedup marker TTL' "$dir/enqueue.lua" && layout=keys
  grep -q 'optional (all n or none)' "$dir/enqueue.lua" && layout=intset-nokeys
  grep -q "'<jobs>:<ttl>:<slot>' per run" "$dir/enqueue.lua" && layout=runs
  valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$dir/cg.out" -q \
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" >"$dir/log" 2>&1 &
  vpid=$!
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.2; done
  sha=$(redis-cli -p "$port" script load "$(cat "$dir/enqueue.lua")")
  if [ "$layout" != keys ] && [ "$layout" != tree ] && [ "$layout" != intset ] && [ "${LEGACY:-0}" != 1 ]; then
    redis-cli -p "$port" set 'wa:{bench}:seen-until' "$(date +%s)" >/dev/null
  fi
  generate "$layout" "$sha" >"$dir/stream"
  callgrind_control -i on "$vpid" >/dev/null
  redis-cli -p "$port" --pipe <"$dir/stream" >"$dir/pipe"
  callgrind_control -i off "$vpid" >/dev/null
  callgrind_control -d "$vpid" >/dev/null
  errors=$(sed -n 's/^errors: \([0-9]*\),.*/\1/p' "$dir/pipe")
  redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true
  wait "$vpid" 2>/dev/null || true
  vpid=
  ir=$(cat "$dir"/cg.out* | awk '/^totals:/ {s += $2} END {print s}')
  rm -f "$dir"/cg.out*
  printf '%-24s %-13s %4d calls of %3d jobs  %7d instructions per job  (%s errors)\n' \
    "$( [ -f "$rev" ] && basename "$rev" || git rev-parse --short "$rev")" "$layout" "$calls" "$batch" $((ir / (calls * batch))) "${errors:-?}"
done
