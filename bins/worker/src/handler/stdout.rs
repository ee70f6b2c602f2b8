//! `--stdout`: one JSON line per job on standard output.
//!
//! Group commit. Each handler appends its line to a shared buffer and waits until a write that
//! contains it has reached the OS; only then is its job acknowledged, so a crash never loses a
//! line (at least once). One leader task per busy period takes whatever has accumulated, hands
//! it to a writer thread as one buffer (so a line is never split and lines never interleave),
//! and wakes the waiters when it is written. A waiter is its task's waker, kept beside the lines
//! under the same lock it takes to add its line: no channel or subscription per job. The leader
//! yields once before taking the buffer, so every handler that is ready appends first: under
//! load one `write` carries hundreds of lines, and the cost per job is a copy into the buffer
//! rather than a system call or a thread hop.
//!
//! The writes themselves happen on a thread of their own so that a reader that stops reading
//! (a full pipe) blocks only that thread: the async runtime keeps renewing the lease meanwhile.

use std::fs::File;
use std::future::poll_fn;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};

use tokio::sync::{mpsc, oneshot, watch};
use wa_queue::{Job, Outcome};

#[derive(Debug)]
pub struct StdoutHandler {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    writer: mpsc::UnboundedSender<Batch>,
    stop: watch::Sender<bool>,
}

#[derive(Debug, Default)]
struct State {
    /// lines of the batch being gathered
    buf: Vec<u8>,
    /// number of the batch being gathered (batches are written in order; they count from 1)
    batch: u64,
    /// batches up to and including this number are written (0: none yet)
    through: u64,
    /// the handlers waiting for the batch being gathered, and for the one being written (the
    /// batch before it, while a leader writes it)
    gathering: Vec<Waker>,
    writing: Vec<Waker>,
    /// whether a leader task is running
    leading: bool,
    /// standard output failed: every job from now on is a retry
    failed: bool,
    /// the buffer of the batch written last, emptied, for the next batch: two buffers take
    /// turns, so a batch neither allocates nor grows a buffer of its own (a batch of a few
    /// hundred jobs is larger than a fresh buffer's 64 KiB)
    spare: Vec<u8>,
}

impl StdoutHandler {
    /// Starts the writer thread. When standard output fails (the reader went away), it sends
    /// `true` on `stop` so the worker shuts down instead of failing every job.
    pub fn start(stop: watch::Sender<bool>) -> io::Result<Self> {
        Self::start_on(stdout_file()?, stop)
    }

    /// [`start`](Self::start), writing to `out` instead of standard output.
    fn start_on(out: File, stop: watch::Sender<bool>) -> io::Result<Self> {
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("wa-worker-stdout".into())
            .spawn(move || writer(out, rx))?;
        let state = State {
            batch: 1,
            ..State::default()
        };
        let shared = Shared {
            state: Mutex::new(state),
            writer: tx,
            stop,
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    pub async fn handle(&self, job: &Job) -> Outcome {
        // the batch this job's line is in (0: not added yet)
        let mut batch = 0;
        poll_fn(|cx| {
            let mut st = self.shared.lock();
            if batch == 0 {
                if st.failed {
                    return Poll::Ready(closed());
                }
                push_line(&mut st.buf, job.json());
                batch = st.batch;
                if !st.leading {
                    st.leading = true;
                    drop(st);
                    tokio::spawn(self.shared.clone().lead());
                    st = self.shared.lock();
                }
            }
            st.poll_written(batch, cx)
        })
        .await
    }
}

impl State {
    /// Whether `batch` is written (done) or failed (a retry); else the waker is kept, to be
    /// woken when one of those happens. A poll without a wake (spurious) keeps one more waker
    /// until then.
    fn poll_written(&mut self, batch: u64, cx: &mut Context<'_>) -> Poll<Outcome> {
        if self.through >= batch {
            return Poll::Ready(Outcome::Done);
        }
        if self.failed {
            return Poll::Ready(closed());
        }
        let waiters = if batch == self.batch {
            &mut self.gathering
        } else {
            &mut self.writing
        };
        waiters.push(cx.waker().clone());
        Poll::Pending
    }
}

/// Appends `json` and a newline. Raw line breaks can only be insignificant whitespace in JSON
/// (inside strings they are escaped), but a payload embedded as Meta sent it may contain them
/// (pretty-printed test bodies do): they become spaces, so every job stays one line.
fn push_line(buf: &mut Vec<u8>, json: &str) {
    let bytes = json.as_bytes();
    if memchr::memchr2(b'\n', b'\r', bytes).is_some() {
        buf.extend(bytes.iter().map(|&b| match b {
            b'\n' | b'\r' => b' ',
            b => b,
        }));
    } else {
        buf.extend_from_slice(bytes);
    }
    buf.push(b'\n');
}

fn closed() -> Outcome {
    Outcome::Retry("standard output is closed".into())
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state stays consistent at every unlock, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes batches until the buffer is empty, then steps down.
    async fn lead(self: Arc<Self>) {
        loop {
            // Let every handler that is ready add its line to this batch first.
            tokio::task::yield_now().await;
            let (data, batch) = {
                let mut st = self.lock();
                if st.buf.is_empty() || st.failed {
                    st.leading = false;
                    return;
                }
                let next = match std::mem::take(&mut st.spare) {
                    spare if spare.capacity() > 0 => spare,
                    _ => Vec::with_capacity(64 * 1024),
                };
                let data = std::mem::replace(&mut st.buf, next);
                st.batch += 1;
                // the waiters of the batch now written (`writing` is empty: its vector came back
                // emptied after the last batch's wake)
                let st = &mut *st;
                std::mem::swap(&mut st.gathering, &mut st.writing);
                (data, st.batch - 1)
            };
            let (done, result) = oneshot::channel();
            let (ok, spare) = match self.writer.send((data, done)) {
                Ok(()) => match result.await {
                    Ok((written, mut data)) => {
                        data.clear();
                        (written.is_ok(), data)
                    }
                    Err(_) => (false, Vec::new()),
                },
                Err(_) => (false, Vec::new()),
            };
            let mut wake = {
                let mut st = self.lock();
                st.spare = spare;
                if ok {
                    st.through = batch;
                    std::mem::take(&mut st.writing)
                } else {
                    // a batch whose write failed is not written: its jobs are retries, and so
                    // are those of the batch being gathered
                    st.failed = true;
                    let mut all = std::mem::take(&mut st.writing);
                    all.append(&mut st.gathering);
                    all
                }
            };
            if !ok {
                tracing::error!("cannot write to standard output; stopping");
                let _ = self.stop.send(true);
            }
            for w in wake.drain(..) {
                w.wake();
            }
            // the emptied vector serves the next batch's waiters
            let mut st = self.lock();
            if st.writing.capacity() == 0 {
                st.writing = wake;
            }
        }
    }
}

/// Our own handle on file descriptor 1, bypassing std's line buffering of `Stdout` (which
/// would write at every newline).
fn stdout_file() -> io::Result<File> {
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?))
}

/// A batch's lines, and where to say how writing them went (the buffer comes back with it).
type Batch = (Vec<u8>, oneshot::Sender<(io::Result<()>, Vec<u8>)>);

fn writer(mut out: File, mut rx: mpsc::UnboundedReceiver<Batch>) {
    while let Some((data, done)) = rx.blocking_recv() {
        let result = out.write_all(&data);
        let _ = done.send((result, data));
    }
}

#[cfg(test)]
mod tests {
    use super::{StdoutHandler, push_line};
    use tokio::sync::watch;
    use wa_queue::{Job, Outcome};

    /// Many jobs at once, over several batches: each is done only once written, and each
    /// line is written exactly once.
    #[tokio::test]
    async fn every_job_is_written_once() {
        use std::io::BufRead;
        const JOBS: usize = 500;
        let (reader, writer) = std::io::pipe().expect("pipe");
        let lines = std::thread::spawn(move || {
            let lines = std::io::BufReader::new(reader).lines().take(JOBS);
            lines.map(|l| l.expect("a line")).collect::<Vec<_>>()
        });
        let out = std::fs::File::from(std::os::fd::OwnedFd::from(writer));
        let (stop, _stopped) = watch::channel(false);
        let handler = std::sync::Arc::new(StdoutHandler::start_on(out, stop).expect("handler"));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..JOBS {
            let json = format!(r#"{{"v":1,"id":"j{i}","kind":"message","payload":{{}}}}"#);
            let job = Job::from_json(&json).expect("a job");
            let handler = handler.clone();
            tasks.spawn(async move { handler.handle(&job).await });
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        while let Some(outcome) = tasks.join_next().await {
            assert!(matches!(outcome, Ok(Outcome::Done)), "{outcome:?}");
        }
        let mut ids: Vec<String> = lines
            .join()
            .expect("reader")
            .iter()
            .map(|l| Job::from_json(l).expect("a job line").id().to_owned())
            .collect();
        ids.sort();
        let mut want: Vec<String> = (0..JOBS).map(|i| format!("j{i}")).collect();
        want.sort();
        assert_eq!(ids, want);
    }

    /// When the write of a job's line fails (the pipe's reader is gone), that job is a retry,
    /// not done (its line was never written), and the worker is told to stop.
    #[tokio::test]
    async fn failed_write_is_a_retry() {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let out = std::fs::File::from(std::os::fd::OwnedFd::from(writer));
        let (stop, mut stopped) = watch::channel(false);
        let handler = StdoutHandler::start_on(out, stop).expect("handler");
        let job =
            Job::from_json(r#"{"v":1,"id":"a","kind":"message","payload":{}}"#).expect("a job");
        let outcome = handler.handle(&job).await;
        assert!(matches!(outcome, Outcome::Retry(_)), "{outcome:?}");
        stopped.wait_for(|s| *s).await.expect("told to stop");
    }

    /// A job whose payload spans several lines is still written as one JSON line, and the
    /// line parses to the same value.
    #[test]
    fn multi_line_payload_becomes_one_line() {
        let json = "{\"v\":1,\"payload\":{\r\n  \"text\": \"a\\nb\"\n}}";
        let mut buf = Vec::new();
        push_line(&mut buf, json);
        assert_eq!(buf.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(buf.last(), Some(&b'\n'));
        let back: serde_json::Value = serde_json::from_slice(&buf).expect("still JSON");
        let orig: serde_json::Value = serde_json::from_str(json).expect("test JSON");
        assert_eq!(back, orig);
    }
}
