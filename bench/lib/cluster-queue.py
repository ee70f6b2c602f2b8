"""A queue name whose shards spread evenly over a cluster's masters, for bench/cluster.sh.

With M masters holding equal slot ranges (master i: slots [i*16384/M, (i+1)*16384/M)), shard s
of queue Q lives in the slot of its hash tag `Q:s` (`Q` alone with one shard). Hash slots are
CRC16 (XMODEM) mod 16384, as Redis Cluster computes them. Prints the first name `<base>-<k>`
whose S shards split over the masters as evenly as possible (with S = M: one shard per
master), then the shard count per master.

Some spreads no name reaches: CRC16 is linear, so tags that differ only in the last bit of
their last byte (`Q:0` and `Q:1`, `Q:2` and `Q:3`, ...) always fall in the same half of the
slots, and with two masters holding one half each, shards 0 and 1 always share a master. For
S <= M it then prints `<base>-0`, the spread it would have, and the moves that give every shard
a master of its own: `slot:master` pairs (shard i's slot to master i), which bench/cluster.sh
applies with CLUSTER SETSLOT.

Usage: python3 bench/lib/cluster-queue.py BASE MASTERS SHARDS
"""

import sys


def crc16(data):
    crc = 0
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def master_of(tag, masters):
    return crc16(tag.encode()) % 16384 * masters // 16384


def spread(name, masters, shards):
    counts = [0] * masters
    for tag in tags(name, shards):
        counts[master_of(tag, masters)] += 1
    return counts


def tags(name, shards):
    return [name] if shards == 1 else [f"{name}:{s}" for s in range(shards)]


def main(base, masters, shards):
    for k in range(10_000):
        name = f"{base}-{k}"
        counts = spread(name, masters, shards)
        if max(counts) - min(counts) <= (0 if shards % masters == 0 else 1):
            print(name, ",".join(map(str, counts)))
            return
    if shards > masters:
        sys.exit(f"no name found for {masters} masters and {shards} shards")
    name = f"{base}-0"
    moves = [f"{crc16(t.encode()) % 16384}:{i}" for i, t in enumerate(tags(name, shards))]
    print(name, ",".join(map(str, spread(name, masters, shards))), *moves)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
