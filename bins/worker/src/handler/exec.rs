//! `--exec "CMD ARGS"`: one process per job.
//!
//! The command line is split by [`split_command`], not handed to a shell: a job can never
//! inject shell syntax, and what runs is exactly what the operator wrote. Who wants a shell
//! writes `--exec "sh -c '...'"`.
//!
//! The child gets the job JSON on standard input and a clean environment: `PATH`, `HOME` and
//! `LANG` as the worker has them, `WA_JOB_ID`, `WA_JOB_KIND`, `WA_ATTEMPT` (the delivery
//! number, 1 for the first), and the variables named with `--exec-env`; nothing else, so
//! `REDIS_URL` or a secret reaches a handler only when the operator names it. Its standard
//! output is the worker's; its standard error is logged line by line with the job id, with
//! fixed bounds (see [`stderr`](super::stderr)).
//!
//! The outcome is the child's exit status, known the moment it exits: exit 0 is done, exit 65
//! (EX_DATAERR) is dead at once, anything else (another code, a signal, the handler timeout)
//! is a retry. What the child's own children do with the pipes does not matter.
//!
//! Each child leads a process group of its own. When it exits, times out, or the worker
//! abandons it (the end of the shutdown grace), the whole group is killed with SIGKILL: no
//! descendant outlives the delivery it belongs to, and none is re-parented to pile up behind
//! a worker that is PID 1. The worker then reaps what it is the parent of: the child, and the
//! group's orphans when the worker is the reaper of orphans (PID 1 in a container). A handler
//! that wants work to outlive its delivery must leave the group itself (`setsid`).

use std::ffi::OsString;
use std::path::Path;
use std::pin::pin;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, WaitOptions};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use wa_queue::{Job, Outcome};

use super::stderr;

/// Exit code that sends a job straight to dead (sysexits EX_DATAERR).
pub const EXIT_DEAD: i32 = 65;
/// Variables every handler gets from the worker's environment (when the worker has them).
const BASE_ENV: [&str; 3] = ["PATH", "HOME", "LANG"];
/// After the child exited and its group was killed, how long standard error may still take to
/// reach its end (what was written before the exit is logged).
const STDERR_DRAIN: Duration = Duration::from_millis(200);
/// How long a delivery's outcome waits for the killed group's processes to be reaped.
const REAP_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug)]
pub struct ExecHandler {
    program: String,
    args: Vec<String>,
    timeout: Duration,
    /// what the child's environment starts from (values read once, at start)
    env: Vec<(String, OsString)>,
}

impl ExecHandler {
    /// Parses and checks the command line (the program must exist, as a path or on `PATH`)
    /// and the names of the variables passed through (`--exec-env`).
    pub fn new(command: &str, timeout: Duration, pass_env: &[String]) -> Result<Self, String> {
        let mut words = split_command(command)?.into_iter();
        let program = words.next().ok_or("the command is empty")?;
        if !program_exists(&program) {
            return Err(format!("`{program}` is not a file nor found on PATH"));
        }
        Ok(Self {
            program,
            args: words.collect(),
            timeout,
            env: child_env(pass_env)?,
        })
    }

    pub async fn handle(&self, job: &Job, delivery: u32) -> Outcome {
        let spawned = Command::new(&self.program)
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("WA_JOB_ID", job.id())
            .env("WA_JOB_KIND", job.kind_name())
            .env("WA_ATTEMPT", delivery.to_string())
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            // The group guard below kills the group; this reaps the child if the future is
            // dropped before it did.
            .kill_on_drop(true)
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => return Outcome::Retry(format!("cannot start {}: {e}", self.program)),
        };
        let group = child
            .id()
            .and_then(|id| Pid::from_raw(id as i32))
            .map(Group);
        let input = job.json().to_owned();
        let stdin = child.stdin.take();
        let err = child.stderr.take();
        let feed = async move {
            if let Some(mut stdin) = stdin {
                // A child that exits without reading its input is its own business (EPIPE).
                let _ = stdin.write_all(input.as_bytes()).await;
            }
        };
        let log = async move {
            if let Some(err) = err {
                stderr::log(err, job.id(), delivery).await;
            }
        };
        let mut io = pin!(async { tokio::join!(feed, log) });
        let mut io_done = false;
        let deadline = tokio::time::sleep(self.timeout);
        let mut deadline = pin!(deadline);
        // The child's exit decides; input and standard error are served meanwhile.
        let waited = loop {
            tokio::select! {
                status = child.wait() => break Some(status),
                _ = &mut io, if !io_done => io_done = true,
                _ = &mut deadline => break None,
            }
        };
        if let Some(group) = &group {
            group.kill();
        }
        let outcome = match waited {
            Some(Ok(status)) => outcome(status),
            Some(Err(e)) => Outcome::Retry(format!("waiting for the handler failed: {e}")),
            None => {
                let _ = child.wait().await;
                Outcome::Retry(format!(
                    "handler timed out after {}",
                    humantime::format_duration(self.timeout)
                ))
            }
        };
        if !io_done {
            let _ = tokio::time::timeout(STDERR_DRAIN, io).await;
        }
        if let Some(group) = group {
            group.reap().await;
        }
        outcome
    }
}

/// A handler's process group (its id is the child's pid). Dropping it kills the group, so a
/// handler future abandoned by the run loop (end of the shutdown grace) leaves nothing running.
#[derive(Debug)]
struct Group(Pid);

impl Group {
    /// SIGKILL to every process still in the group (none left is fine).
    fn kill(&self) {
        let _ = rustix::process::kill_process_group(self.0, Signal::KILL);
    }

    /// Reaps the group's processes this worker is the parent of (after the child itself was
    /// waited for): its orphans come to the worker when it is PID 1. Returns at once when it
    /// has none.
    async fn reap(self) {
        let pgid = self.0;
        std::mem::forget(self);
        let reaping = tokio::task::spawn_blocking(move || {
            while let Ok(Some(_)) = rustix::process::waitpgid(pgid, WaitOptions::empty()) {}
        });
        // SIGKILLed processes die at once unless stuck in the kernel; the outcome does not wait
        // on such a one (the thread goes on reaping).
        let _ = tokio::time::timeout(REAP_WAIT, reaping).await;
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The environment a handler starts from: [`BASE_ENV`] and the names passed through, with the
/// worker's values (a name the worker does not have is left out).
fn child_env(pass: &[String]) -> Result<Vec<(String, OsString)>, String> {
    let mut env = Vec::new();
    for name in BASE_ENV
        .iter()
        .copied()
        .chain(pass.iter().map(String::as_str))
    {
        if name.is_empty() || name.contains(['=', '\0']) {
            return Err(format!("`{name}` is not a variable name"));
        }
        if env.iter().any(|(k, _)| k == name) {
            continue;
        }
        if let Some(value) = std::env::var_os(name) {
            env.push((name.to_owned(), value));
        }
    }
    Ok(env)
}

fn outcome(status: ExitStatus) -> Outcome {
    match status.code() {
        Some(0) => Outcome::Done,
        Some(EXIT_DEAD) => Outcome::Dead(format!("handler exited with {EXIT_DEAD}")),
        Some(code) => Outcome::Retry(format!("handler exited with {code}")),
        None => Outcome::Retry(format!("handler ended by a signal ({status})")),
    }
}

/// Splits a command line into words: whitespace separates; `'…'` is literal; `"…"` allows
/// `\"` and `\\`; outside quotes `\` escapes the next character. No variables, globs or
/// other shell syntax.
pub fn split_command(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => word.push(c),
                        None => return Err("unterminated ' quote".into()),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\')) => word.push(c),
                            Some(c) => {
                                word.push('\\');
                                word.push(c);
                            }
                            None => return Err("unterminated \" quote".into()),
                        },
                        Some(c) => word.push(c),
                        None => return Err("unterminated \" quote".into()),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => word.push(c),
                    None => return Err("trailing \\".into()),
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

fn program_exists(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).is_file();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

#[cfg(test)]
mod tests {
    use super::split_command;

    /// Words split on whitespace, with both quote styles and backslash escapes.
    #[test]
    fn splits_like_a_shell_without_one() {
        let w =
            split_command(r#"  sh -c 'echo "$WA_JOB_ID" >> out'  a\ b "x \"y\" \n" '' "#).unwrap();
        assert_eq!(
            w,
            [
                "sh",
                "-c",
                r#"echo "$WA_JOB_ID" >> out"#,
                "a b",
                r#"x "y" \n"#,
                ""
            ]
        );
    }

    /// Unbalanced quotes and a trailing backslash are errors, an empty line is no words.
    #[test]
    fn rejects_unbalanced_quotes() {
        assert!(split_command("a 'b").is_err());
        assert!(split_command("a \"b").is_err());
        assert!(split_command("a \\").is_err());
        assert!(split_command("   ").unwrap().is_empty());
    }
}
