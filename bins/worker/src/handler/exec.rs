//! `--exec "CMD ARGS"`: one process per job.
//!
//! The command line is split by [`split_command`], not handed to a shell: a job can never
//! inject shell syntax, and what runs is exactly what the operator wrote. Who wants a shell
//! writes `--exec "sh -c '...'"`.
//!
//! The child gets the job JSON on standard input and `WA_JOB_ID`, `WA_JOB_KIND`, `WA_ATTEMPT`
//! (the delivery number, 1 for the first) in its environment. Its standard output is the
//! worker's; its standard error is logged line by line with the job id. Exit 0 is done, exit 65
//! (EX_DATAERR) is dead at once, anything else (another code, a signal, the handler timeout,
//! which kills it) is a retry.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;
use wa_queue::{Job, Outcome};

/// Exit code that sends a job straight to dead (sysexits EX_DATAERR).
pub const EXIT_DEAD: i32 = 65;
/// Standard error lines logged per job at most; the rest is read and counted.
const MAX_LOGGED_LINES: usize = 50;
/// Longest standard error line logged (bytes); longer ones are cut.
const MAX_LINE: usize = 2048;

#[derive(Debug)]
pub struct ExecHandler {
    program: String,
    args: Vec<String>,
    timeout: Duration,
}

impl ExecHandler {
    /// Parses and checks the command line: the program must exist (as a path, or on `PATH`).
    pub fn new(command: &str, timeout: Duration) -> Result<Self, String> {
        let mut words = split_command(command)?.into_iter();
        let program = words.next().ok_or("the command is empty")?;
        if !program_exists(&program) {
            return Err(format!("`{program}` is not a file nor found on PATH"));
        }
        Ok(Self {
            program,
            args: words.collect(),
            timeout,
        })
    }

    pub async fn handle(&self, job: &Job, delivery: u32) -> Outcome {
        let mut child = match Command::new(&self.program)
            .args(&self.args)
            .env("WA_JOB_ID", &job.id)
            .env("WA_JOB_KIND", &job.kind)
            .env("WA_ATTEMPT", delivery.to_string())
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            // A handler future dropped by the run loop (its own timeout, shutdown) must not
            // leave the process running.
            .kill_on_drop(true)
            .spawn()
        {
            Ok(child) => child,
            Err(e) => return Outcome::Retry(format!("cannot start {}: {e}", self.program)),
        };
        let input = job.json().to_owned();
        let stdin = child.stdin.take();
        let stderr = child.stderr.take();
        let feed = async move {
            if let Some(mut stdin) = stdin {
                // A child that exits without reading its input is its own business (EPIPE).
                let _ = stdin.write_all(input.as_bytes()).await;
            }
        };
        let log = async move {
            if let Some(stderr) = stderr {
                log_stderr(stderr, &job.id, delivery).await;
            }
        };
        let finished = tokio::time::timeout(self.timeout, async {
            tokio::join!(feed, log, child.wait()).2
        })
        .await;
        match finished {
            Ok(Ok(status)) => outcome(status),
            Ok(Err(e)) => Outcome::Retry(format!("waiting for the handler failed: {e}")),
            Err(_) => {
                let _ = child.kill().await;
                Outcome::Retry(format!(
                    "handler timed out after {}",
                    humantime::format_duration(self.timeout)
                ))
            }
        }
    }
}

fn outcome(status: ExitStatus) -> Outcome {
    match status.code() {
        Some(0) => Outcome::Done,
        Some(EXIT_DEAD) => Outcome::Dead(format!("handler exited with {EXIT_DEAD}")),
        Some(code) => Outcome::Retry(format!("handler exited with {code}")),
        None => Outcome::Retry(format!("handler ended by a signal ({status})")),
    }
}

async fn log_stderr(stderr: tokio::process::ChildStderr, id: &str, delivery: u32) {
    let mut lines = BufReader::new(stderr);
    let mut line = Vec::new();
    let mut logged = 0usize;
    let mut skipped = 0usize;
    loop {
        line.clear();
        // Bounded read so one endless line cannot eat memory.
        match (&mut lines)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.len() == MAX_LINE && line.last() != Some(&b'\n') {
            // Drop the rest of an over-long line.
            let mut rest = Vec::new();
            let _ = lines.read_until(b'\n', &mut rest).await;
        }
        if logged < MAX_LOGGED_LINES {
            logged += 1;
            let text = String::from_utf8_lossy(&line);
            tracing::warn!(job_id = %id, attempt = delivery, "handler: {}", text.trim_end());
        } else {
            skipped += 1;
        }
    }
    if skipped > 0 {
        tracing::warn!(job_id = %id, attempt = delivery, "handler: {skipped} more stderr lines not logged");
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
