//! The Lua scripts of the contract and how they are called.
//!
//! Each script lives in `src/lua/*.lua` and is compiled in with `include_str!`, so the text
//! in `docs/queue-contract.md` (checked by a test) and the text Redis runs are the same.

use std::sync::LazyLock;

use redis::{Cmd, ErrorKind, FromRedisValue, RedisResult, ServerErrorKind, aio::ConnectionLike};

/// One script: its source and SHA1.
pub(crate) struct Lua {
    src: &'static str,
    sha: String,
}

impl Lua {
    fn new(src: &'static str) -> Self {
        Self {
            src,
            sha: redis::Script::new(src).get_hash().to_owned(),
        }
    }

    /// `EVALSHA <sha> <nkeys>` (or `EVAL <source> <nkeys>`); keys and arguments follow, room
    /// made for `size` more.
    fn cmd(&self, eval: bool, nkeys: usize, size: Size) -> Cmd {
        let (name, script) = if eval {
            ("EVAL", self.src)
        } else {
            ("EVALSHA", self.sha.as_str())
        };
        let mut c = Cmd::with_capacity(3 + size.args, 32 + script.len() + size.bytes);
        c.arg(name).arg(script).arg(nkeys);
        c
    }

    /// Runs the script with EVALSHA; on NOSCRIPT (script cache empty, e.g. after a Redis
    /// restart or SCRIPT FLUSH) sends the same call once as EVAL, which also caches it again.
    /// `fill` appends the `nkeys` keys and then the arguments.
    pub(crate) async fn call<T: FromRedisValue>(
        &self,
        conn: &mut impl ConnectionLike,
        nkeys: usize,
        fill: impl Fn(&mut Cmd),
    ) -> RedisResult<T> {
        self.call_sized(conn, nkeys, Size::default(), fill).await
    }

    /// [`call`](Self::call) for a call whose keys and arguments take about `size`: the
    /// command is built in one buffer of that size instead of growing into it.
    pub(crate) async fn call_sized<T: FromRedisValue>(
        &self,
        conn: &mut impl ConnectionLike,
        nkeys: usize,
        size: Size,
        fill: impl Fn(&mut Cmd),
    ) -> RedisResult<T> {
        let mut c = self.cmd(false, nkeys, size);
        fill(&mut c);
        match c.query_async(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                let mut c = self.cmd(true, nkeys, size);
                fill(&mut c);
                c.query_async(conn).await
            }
            other => other,
        }
    }

    /// Like [`call`](Self::call), with `then` sent right behind the script in one pipeline
    /// (on the same connection, so Redis runs it just after); answers both replies.
    pub(crate) async fn call_then<T: FromRedisValue>(
        &self,
        conn: &mut impl ConnectionLike,
        nkeys: usize,
        fill: impl Fn(&mut Cmd),
        then: &Cmd,
    ) -> RedisResult<(redis::Value, T)> {
        let pipe = |eval: bool| {
            let mut c = self.cmd(eval, nkeys, Size::default());
            fill(&mut c);
            let mut p = redis::pipe();
            p.add_command(c).add_command(then.clone());
            p
        };
        match pipe(false).query_async(conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                pipe(true).query_async(conn).await
            }
            other => other,
        }
    }
}

/// About how many keys and arguments a script call carries, and their bytes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Size {
    pub(crate) args: usize,
    pub(crate) bytes: usize,
}

macro_rules! scripts {
    ($($name:ident = $file:literal;)* [$($port:literal),*]) => {
        $(pub(crate) static $name: LazyLock<Lua> =
            LazyLock::new(|| Lua::new(include_str!(concat!("lua/", $file))));)*

        /// Every Lua script of the contract as `(file name, source)`: what a port to another
        /// language can load as is (see `docs/queue-contract.md`). `fetch.lua`, `settle.lua`
        /// and `replay.lua` are the simplest way for a port to take, settle and replay jobs;
        /// this crate does the same by position, through `exchange.lua` and `dead.lua`.
        pub const SCRIPTS: &[(&str, &str)] = &[
            $(($file, include_str!(concat!("lua/", $file))),)*
            $(($port, include_str!(concat!("lua/", $port))),)*
        ];
    };
}

scripts! {
    ENQUEUE = "enqueue.lua";
    EXCHANGE = "exchange.lua";
    LEASE = "lease.lua";
    PROMOTE = "promote.lua";
    EXPIRED = "expired.lua";
    RELEASE = "release.lua";
    DEAD = "dead.lua";
    LEGACY = "legacy.lua";
    // for ports only
    ["fetch.lua", "settle.lua", "replay.lua"]
}

/// The exchange script's text, for the constants read from it at compile time.
const EXCHANGE_SRC: &str = include_str!("lua/exchange.lua");

/// The exchange script's per-call cap, `local MAX_PER_CALL = ...` in `exchange.lua`: written
/// once, in the script, which enforces it whoever calls it; the consumer's batch bound and its
/// removals by index per call are this same number.
pub(crate) const EXCHANGE_MAX_PER_CALL: usize = lua_local(EXCHANGE_SRC, "local MAX_PER_CALL = ");

/// The decimal number that follows `decl` (a declaration such as `local NAME = `) in a
/// script's text. Evaluated at compile time, so a script without it does not build.
const fn lua_local(src: &str, decl: &str) -> usize {
    let (src, decl) = (src.as_bytes(), decl.as_bytes());
    let mut at = 0;
    while at + decl.len() <= src.len() {
        let mut i = 0;
        while i < decl.len() && src[at + i] == decl[i] {
            i += 1;
        }
        if i == decl.len() {
            let (mut end, mut n) = (at + i, 0);
            while end < src.len() && src[end].is_ascii_digit() {
                n = n * 10 + (src[end] - b'0') as usize;
                end += 1;
            }
            assert!(end > at + i, "the declaration is not followed by a number");
            return n;
        }
        at += 1;
    }
    panic!("the declaration is not in the script");
}

/// Maps a Redis error to ours without leaking the dependency's type.
pub(crate) fn redis_err(e: redis::RedisError) -> crate::QueueError {
    crate::conn::redis_error(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cap is read from the script's own line, and is the 1000 the docs quote.
    #[test]
    fn exchange_cap_is_read_from_the_script() {
        assert_eq!(EXCHANGE_MAX_PER_CALL, 1000);
        assert!(EXCHANGE_SRC.contains("\nlocal MAX_PER_CALL = 1000\n"));
        assert_eq!(
            lua_local("local A = 7\nlocal B = 42 -- x", "local B = "),
            42
        );
    }
}
