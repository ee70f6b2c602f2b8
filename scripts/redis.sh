# shellcheck shell=bash
# Redis bootstrap shared by scripts/run.sh and scripts/test.sh (sourced, not run).
#
# wa_redis_up: if a Redis answers at $REDIS_URL (default redis://127.0.0.1:6379), use it and
# touch nothing else. Otherwise start a private redis-server on a free loopback port in a
# temporary directory, export REDIS_URL pointing at it, and stop it when the shell exits.
# If redis-server is missing: install Debian's package when running as root with apt-get,
# else stop with a message that says what to install.

wa_log() { printf '\033[1m[wa]\033[0m %s\n' "$*" >&2; }

# Host and port of a redis:// URL (user, password, db and query are ignored here).
wa_redis_addr() {
  local rest=${1#*://}
  rest=${rest##*@}
  rest=${rest%%/*}
  rest=${rest%%\?*}
  local host=${rest%:*} port=6379
  [ "$host" != "$rest" ] && port=${rest##*:}
  host=${host#[}
  host=${host%]}
  printf '%s %s\n' "${host:-127.0.0.1}" "$port"
}

# True when something at host:port answers a RESP PING (any reply, so a Redis that asks for
# AUTH counts as answering: the URL carries the credentials for the real clients).
wa_redis_answers() {
  local reply
  reply=$(
    exec 2>/dev/null
    exec 9<>"/dev/tcp/$1/$2" || exit 1
    printf 'PING\r\n' >&9
    IFS= read -r -t 2 line <&9 && printf '%s' "$line"
  ) || return 1
  case "$reply" in
    +PONG* | -NOAUTH* | -WRONGPASS* | -ERR* | -LOADING*) return 0 ;;
    *) return 1 ;;
  esac
}

wa_free_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 20000))
    if ! (exec 2>/dev/null; exec 8<>"/dev/tcp/127.0.0.1/$port"); then
      echo "$port"
      return 0
    fi
  done
  return 1
}

wa_install_redis() {
  if command -v redis-server >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    wa_log "redis-server is not installed: installing Debian's redis-server package"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >&2
    return 0
  fi
  wa_log "no Redis answers at ${REDIS_URL} and redis-server is not installed."
  wa_log "Install it (Debian/Ubuntu: 'sudo apt-get install redis-server'; macOS: 'brew install redis'),"
  wa_log "or point REDIS_URL at a running Redis, then run this command again."
  exit 1
}

WA_REDIS_PID=""
WA_REDIS_DIR=""

wa_redis_down() {
  if [ -n "$WA_REDIS_PID" ]; then
    kill "$WA_REDIS_PID" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$WA_REDIS_PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$WA_REDIS_PID" 2>/dev/null || true
    WA_REDIS_PID=""
  fi
  if [ -n "$WA_REDIS_DIR" ]; then rm -rf "$WA_REDIS_DIR"; WA_REDIS_DIR=""; fi
}

wa_redis_up() {
  export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
  local host port
  read -r host port <<<"$(wa_redis_addr "$REDIS_URL")"
  if wa_redis_answers "$host" "$port"; then
    wa_log "using the Redis at $host:$port"
    return 0
  fi
  wa_install_redis
  local wanted="$host:$port"
  port=$(wa_free_port) || { wa_log "found no free loopback port for a private Redis"; exit 1; }
  WA_REDIS_DIR=$(mktemp -d "${TMPDIR:-/tmp}/wa-redis.XXXXXX")
  # In a session of its own, so a Ctrl-C in the terminal reaches the programs using it (which then
  # stop gracefully, returning their jobs) and not Redis itself; wa_redis_down stops it after them.
  local detach=()
  command -v setsid >/dev/null 2>&1 && detach=(setsid)
  "${detach[@]}" redis-server --bind 127.0.0.1 --port "$port" --dir "$WA_REDIS_DIR" --save "" \
    --appendonly no --logfile "$WA_REDIS_DIR/redis.log" --daemonize no >/dev/null 2>&1 &
  WA_REDIS_PID=$!
  for _ in $(seq 1 100); do
    wa_redis_answers 127.0.0.1 "$port" && break
    kill -0 "$WA_REDIS_PID" 2>/dev/null || break
    sleep 0.1
  done
  if ! wa_redis_answers 127.0.0.1 "$port"; then
    wa_log "the private redis-server did not start; its log:"
    cat "$WA_REDIS_DIR/redis.log" >&2 || true
    wa_redis_down
    exit 1
  fi
  export REDIS_URL="redis://127.0.0.1:$port"
  wa_log "no Redis answered at $wanted: started a private one at $REDIS_URL (stopped on exit)"
}
