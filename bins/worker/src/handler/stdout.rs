//! `--stdout`: one JSON line per job on standard output.
//!
//! One writer thread owns standard output. Handlers send it their line and wait; it writes
//! whatever has queued up meanwhile with one buffered write and one flush, then tells every
//! sender. So a line is a whole `write` (lines never interleave), a job is acknowledged only
//! after its line reached the OS (at least once, even through a crash), and under load the cost
//! is one system call per batch rather than per job. The thread also keeps blocking pipe writes
//! off the async runtime.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsFd;

use tokio::sync::{mpsc, oneshot, watch};
use wa_queue::{Job, Outcome};

/// Lines written per flush at most, so acknowledgements are not held back too long.
const MAX_BATCH: usize = 4096;

type Line = (Vec<u8>, oneshot::Sender<bool>);

#[derive(Debug)]
pub struct StdoutHandler {
    tx: mpsc::UnboundedSender<Line>,
}

impl StdoutHandler {
    /// Starts the writer thread. When standard output fails (the reader went away), it sends
    /// `true` on `stop` so the worker shuts down instead of failing every job.
    pub fn start(stop: watch::Sender<bool>) -> io::Result<Self> {
        let out = stdout_file()?;
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::Builder::new()
            .name("wa-worker-stdout".into())
            .spawn(move || writer(out, rx, stop))?;
        Ok(Self { tx })
    }

    pub async fn handle(&self, job: &Job) -> Outcome {
        let mut line = super::job_json(job).into_bytes();
        line.push(b'\n');
        let (done, written) = oneshot::channel();
        if self.tx.send((line, done)).is_err() {
            return Outcome::Retry("standard output is closed".into());
        }
        match written.await {
            Ok(true) => Outcome::Done,
            _ => Outcome::Retry("standard output is closed".into()),
        }
    }
}

/// Our own handle on file descriptor 1, bypassing std's line buffering of `Stdout` (which
/// would flush at every newline).
fn stdout_file() -> io::Result<File> {
    Ok(File::from(io::stdout().as_fd().try_clone_to_owned()?))
}

fn writer(out: File, mut rx: mpsc::UnboundedReceiver<Line>, stop: watch::Sender<bool>) {
    let mut out = io::BufWriter::with_capacity(256 * 1024, out);
    let mut batch: Vec<Line> = Vec::with_capacity(MAX_BATCH);
    let mut healthy = true;
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(line) => batch.push(line),
                Err(_) => break,
            }
        }
        if healthy {
            let written = batch
                .iter()
                .try_for_each(|(line, _)| out.write_all(line))
                .and_then(|()| out.flush());
            if let Err(e) = written {
                tracing::error!(error = %e, "cannot write to standard output; stopping");
                healthy = false;
                let _ = stop.send(true);
            }
        }
        for (_, done) in batch.drain(..) {
            let _ = done.send(healthy);
        }
    }
}
