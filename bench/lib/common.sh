# Helpers shared by the bench/*.sh scripts; source it (`. "$REPO/bench/lib/common.sh"`).
# Defines: usage, log, free_port, cluster_port, ticks, redis_counters, busy_ticks, write_env.

# usage: prints the comment block at the top of the calling script (its help text).
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }

# log MESSAGE...: a timestamped line on stderr, tagged with the script's name.
log() { echo "[$(basename "$0" .sh) $(date +%H:%M:%S)] $*" >&2; }

# free_port: a TCP port free on 127.0.0.1 now (the kernel's choice).
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# cluster_port: a free port for a Redis Cluster node: at most 55535 (its bus port is port +
# 10000), with that bus port free too.
cluster_port() {
  python3 - <<'PY'
import random, socket

def free(port):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()

while True:
    port = random.randint(20000, 55535)
    if free(port) and free(port + 10000):
        print(port)
        break
PY
}

# ticks PID: the process's user + system CPU time so far, in clock ticks (all its threads).
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# busy_ticks: the whole machine's busy CPU time so far (user, nice, system, irq, softirq; not
# idle, iowait nor steal), in clock ticks, every core.
busy_ticks() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }

# redis_counters PORT: "<cpu us> <scripts' us> <script calls>" of the Redis at PORT so far: its
# whole CPU (INFO cpu: used_cpu_sys + used_cpu_user), and the time spent in scripts and how many
# were called (INFO commandstats: EVAL, EVALSHA and their _RO forms; a script's time includes
# the commands it runs, and is wall clock, so it exceeds the CPU when Redis waits for a core).
redis_counters() {
  redis-cli -p "$1" info everything | tr -d '\r' | awk -F'[:,=]' '
    /^used_cpu_(sys|user):/ { cpu += $2 }
    /^cmdstat_eval(sha)?(_ro)?:/ {
      for (i = 2; i < NF; i++) { if ($i == "usec") us += $(i + 1); if ($i == "calls") calls += $(i + 1) }
    }
    END { printf "%.0f %.0f %.0f\n", cpu * 1e6, us, calls }'
}

# write_env FILE [LINE...]: the run's context (date, commit, machine, load average) and the
# given lines into FILE, and on stderr.
write_env() {
  local file="$1" repo
  shift
  repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
  {
    echo "date=$(date -u +%Y-%m-%dT%H:%M:%SZ) host=$(hostname) repo=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo ?)$(git -C "$repo" diff --quiet 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "cpu=$(lscpu | awk -F: '/Model name/{gsub(/^ +/,"",$2);print $2}') cores=$(nproc) kernel=$(uname -r) redis=$(redis-server --version | awk '{print $3}')"
    echo "load before start: $(cut -d' ' -f1-3 /proc/loadavg)"
    for line in "$@"; do echo "$line"; done
  } | tee "$file" >&2
}
