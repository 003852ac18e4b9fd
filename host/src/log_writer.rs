//! Where log lines go: a buffer that one thread writes to stdout every
//! 20 ms, or sooner once 64 KiB wait.
//!
//! `tracing-appender`'s non-blocking writer wakes its thread for every line;
//! at tens of thousands of lines a second (a request line and three event
//! lines per order) that wake cost about a tenth of an order's host CPU
//! (`docs/PERFORMANCE.md`). Here a line costs a lock and a copy; the writer
//! thread sleeps on a timer. Nothing is dropped while the host runs: past
//! 8 MiB waiting (stdout blocked) a logger waits for the writer. Dropping
//! the `Flush` guard writes what is left as `main` returns, waiting at most
//! a second for a stuck stdout.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How often the writer thread writes what waits.
const EVERY: Duration = Duration::from_millis(20);
/// What wakes the writer before its time.
const SOON: usize = 64 * 1024;
/// What makes loggers wait for the writer.
const FULL: usize = 8 * 1024 * 1024;

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// The writer waits on it (for `SOON` or its timer), loggers on it when `FULL`.
    changed: Condvar,
}

#[derive(Default)]
struct State {
    lines: Vec<u8>,
    closing: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The `MakeWriter` handed to `tracing_subscriber`.
#[derive(Clone)]
pub struct Lines(Arc<Shared>);

/// Stops the writer thread once everything is written.
pub struct Flush {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// The writer for `out`, and the guard that flushes it.
pub fn to(out: impl Write + Send + 'static) -> (Lines, Flush) {
    let shared = Arc::new(Shared::default());
    let writer = shared.clone();
    // As tracing-appender does: a host that cannot start this thread stops
    // at once, rather than pile up lines no one writes.
    let thread = std::thread::Builder::new()
        .name("wharf-log".into())
        .spawn(move || write_out(&writer, out))
        .expect("starting the log writer thread");
    (Lines(shared.clone()), Flush { shared, thread: Some(thread) })
}

fn write_out(shared: &Shared, mut out: impl Write) {
    let mut spare = Vec::new();
    loop {
        let mut state = shared.lock();
        if state.lines.len() < SOON && !state.closing {
            state = shared.changed.wait_timeout(state, EVERY).unwrap_or_else(|e| e.into_inner()).0;
        }
        std::mem::swap(&mut state.lines, &mut spare);
        let closing = state.closing;
        drop(state);
        // Loggers waiting on a full buffer may go on.
        shared.changed.notify_all();
        if !spare.is_empty() {
            let _ = out.write_all(&spare).and_then(|()| out.flush());
            spare.clear();
        }
        if closing {
            return;
        }
    }
}

impl Write for Lines {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut state = self.0.lock();
        while state.lines.len() >= FULL && !state.closing {
            state = self.0.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        state.lines.extend_from_slice(line);
        if state.lines.len() >= SOON {
            self.0.changed.notify_all();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = Lines;

    fn make_writer(&'a self) -> Lines {
        self.clone()
    }
}

/// How long exit waits for the last lines (stdout may be a stuck pipe).
const LAST_WRITE: Duration = Duration::from_secs(1);

impl Drop for Flush {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.changed.notify_all();
        let Some(thread) = self.thread.take() else { return };
        let until = std::time::Instant::now() + LAST_WRITE;
        while !thread.is_finished() && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `Write` the test can read back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_reach_the_output_in_order_within_the_period_and_all_on_drop() {
        let sink = Sink::default();
        let (lines, flush) = to(sink.clone());
        let mut w = lines.make_writer();
        w.write_all(b"one\n").unwrap();
        w.write_all(b"two\n").unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while sink.0.lock().unwrap().as_slice() != b"one\ntwo\n" {
            assert!(std::time::Instant::now() < deadline, "not written within the period");
            std::thread::sleep(Duration::from_millis(5));
        }
        for i in 0..10_000 {
            writeln!(lines.make_writer(), "line {i}").unwrap();
        }
        drop(flush);
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let expected: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(out, format!("one\ntwo\n{expected}"), "every line, once, in order");
    }
}
