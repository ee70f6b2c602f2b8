//! A handler process's standard error, read with fixed memory and logged line by line.
//!
//! A handler may write anything there, without end and without a newline (a stuck loop, a
//! binary dump). The reader holds one read buffer and one line of at most [`MAX_LINE`] bytes,
//! whatever comes: the part of a line beyond that is read and thrown away (the line is logged
//! with a note that it was cut), and past [`MAX_LOGGED_LINES`] lines are only counted. So a
//! handler costs the worker at most about [`READ_CHUNK`] + [`MAX_LINE`] bytes of memory for
//! its standard error.

use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes read from the pipe at a time.
pub const READ_CHUNK: usize = 8 * 1024;
/// Longest standard error line logged (bytes); the rest of a longer one is dropped.
pub const MAX_LINE: usize = 2048;
/// Standard error lines logged per job at most; the rest are read and counted.
pub const MAX_LOGGED_LINES: usize = 50;

/// Splits bytes into lines of at most [`MAX_LINE`] bytes; `emit` gets each line (without its
/// newline) and whether it was cut.
pub struct Lines<F: FnMut(&[u8], bool)> {
    line: Vec<u8>,
    cut: bool,
    emit: F,
}

impl<F: FnMut(&[u8], bool)> Lines<F> {
    pub fn new(emit: F) -> Self {
        Self {
            line: Vec::with_capacity(MAX_LINE),
            cut: false,
            emit,
        }
    }

    /// Takes the next bytes of the stream.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            self.push(&bytes[..end]);
            self.end_line();
            bytes = &bytes[end + 1..];
        }
        self.push(bytes);
    }

    /// The stream ended: a last line without a newline is still emitted.
    pub fn finish(mut self) {
        if !self.line.is_empty() || self.cut {
            self.end_line();
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        let room = MAX_LINE - self.line.len();
        if bytes.len() > room {
            self.cut = true;
        }
        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }

    fn end_line(&mut self) {
        (self.emit)(&self.line, self.cut);
        self.line.clear();
        self.cut = false;
    }
}

/// Reads `stderr` to its end, logging at most [`MAX_LOGGED_LINES`] lines with the job's id.
pub async fn log(mut stderr: impl AsyncRead + Unpin, id: &str, delivery: u32) {
    let mut logged = 0usize;
    let mut skipped = 0usize;
    let mut lines = Lines::new(|line: &[u8], cut: bool| {
        if logged == MAX_LOGGED_LINES {
            skipped += 1;
            return;
        }
        logged += 1;
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        if cut {
            tracing::warn!(job_id = %id, attempt = delivery, "handler: {text} [line cut at {MAX_LINE} bytes]");
        } else {
            tracing::warn!(job_id = %id, attempt = delivery, "handler: {text}");
        }
    });
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => lines.feed(&buf[..n]),
        }
    }
    lines.finish();
    if skipped > 0 {
        tracing::warn!(job_id = %id, attempt = delivery, "handler: {skipped} more stderr lines not logged");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        let mut lines = Lines::new(|l: &[u8], cut| out.push((l.to_vec(), cut)));
        for c in chunks {
            lines.feed(c);
        }
        lines.finish();
        out
    }

    /// Lines split across reads are joined; a last line without a newline is kept.
    #[test]
    fn joins_lines_across_reads() {
        let got = split(&[b"ab", b"c\nd", b"e\n\nf"]);
        let want: Vec<(Vec<u8>, bool)> = vec![
            (b"abc".to_vec(), false),
            (b"de".to_vec(), false),
            (b"".to_vec(), false),
            (b"f".to_vec(), false),
        ];
        assert_eq!(got, want);
    }

    /// An over-long line is cut at MAX_LINE bytes, flagged, and the next line is whole again;
    /// the line buffer never grows past MAX_LINE.
    #[test]
    fn cuts_over_long_lines_without_growing() {
        let long = vec![b'x'; 3 * MAX_LINE + 5];
        let mut seen = Vec::new();
        let mut lines = Lines::new(|l: &[u8], cut| seen.push((l.len(), cut)));
        for chunk in long.chunks(1000) {
            lines.feed(chunk);
            assert!(lines.line.capacity() <= MAX_LINE);
        }
        lines.feed(b"\nnext\n");
        lines.finish();
        assert_eq!(seen, vec![(MAX_LINE, true), (4, false)]);
    }
}
