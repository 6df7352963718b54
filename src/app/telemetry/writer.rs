//! The log writer: a request never waits on stderr.
//!
//! A formatted line is appended to a buffer in memory; one thread writes the buffer out a few
//! milliseconds after its first line, so a burst of lines costs one `write` call instead of one
//! each. If stderr stalls (a slow terminal, a full pipe, a stuck disk) while the buffer is full,
//! new lines are dropped, counted in `fluid_webhooks_log_lines_dropped_total`, and a warning says
//! how many once writing resumes: the delivery is never held up by its log line.
//!
//! A channel with a thread woken per line (`tracing-appender`) was measured slower than writing
//! each line in the request: the wake-up costs more than the `write` it saves.

use std::{
    io::Write,
    sync::{
        Arc, Condvar, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

/// How long the writer waits after a first line for more to write with it.
const GATHER: Duration = Duration::from_millis(5);

/// Lines waiting to be written, and where they go.
pub struct Buffered<W> {
    pending: Mutex<Vec<u8>>,
    ready: Condvar,
    /// Held while writing, so that lines leave in the order they came.
    out: Mutex<W>,
    limit: usize,
    /// Set when the system refused the writer thread: each line is then written at once.
    direct: AtomicBool,
    dropped: AtomicU64,
}

impl<W: Write + Send + 'static> Buffered<W> {
    /// A buffer of at most `limit` bytes in front of `out`, with the thread that writes it (or
    /// none, if the system refuses a thread: then each line is written at once).
    pub fn start(out: W, limit: usize) -> Arc<Self> {
        let buffered = Arc::new(Self {
            pending: Mutex::new(Vec::new()),
            ready: Condvar::new(),
            out: Mutex::new(out),
            limit,
            direct: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        });
        let writer = Arc::clone(&buffered);
        let started = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || writer.write_forever());
        buffered.direct.store(started.is_err(), Ordering::Relaxed);
        buffered
    }

    /// Queues one line; drops it (and counts it) if the buffer is full.
    pub fn push(&self, line: &[u8]) {
        if self.direct.load(Ordering::Relaxed) {
            let _ = lock(&self.out).write_all(line);
            return;
        }
        let mut pending = lock(&self.pending);
        if pending.len() + line.len() > self.limit {
            drop(pending);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("fluid_webhooks_log_lines_dropped_total").increment(1);
            return;
        }
        let first = pending.is_empty();
        pending.extend_from_slice(line);
        drop(pending);
        if first {
            self.ready.notify_one();
        }
    }

    /// Writes out every line queued so far; returns once they are written.
    pub fn flush(&self) {
        let mut out = lock(&self.out);
        let lines = std::mem::take(&mut *lock(&self.pending));
        let _ = out.write_all(&lines);
        let _ = out.flush();
    }

    /// As `flush`, unless the writer is busy (it may be stuck on stderr): for a panic's hook.
    pub fn try_flush(&self) {
        if let (Ok(mut out), Ok(mut pending)) = (self.out.try_lock(), self.pending.try_lock()) {
            let _ = out.write_all(&std::mem::take(&mut *pending));
            let _ = out.flush();
        }
    }

    /// Lines dropped since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn write_forever(&self) {
        let mut lines = Vec::new();
        let mut reported = 0;
        loop {
            drop(
                self.ready
                    .wait_while(lock(&self.pending), |p| p.is_empty())
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            );
            std::thread::sleep(GATHER);
            let mut out = lock(&self.out);
            std::mem::swap(&mut lines, &mut *lock(&self.pending));
            let _ = out.write_all(&lines);
            let _ = out.flush();
            drop(out);
            lines.clear();
            let dropped = self.dropped();
            if dropped > reported {
                tracing::warn!(
                    dropped = dropped - reported,
                    "log lines dropped: stderr was not keeping up; see fluid_webhooks_log_lines_dropped_total"
                );
                reported = dropped;
            }
        }
    }
}

/// A log line is worth more than a poisoned lock: a panic elsewhere leaves the bytes usable.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// A sink that takes nothing until it is opened, like a terminal nobody reads.
    struct Stalled {
        /// Told each time a write begins.
        entered: mpsc::Sender<()>,
        open: mpsc::Receiver<()>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Stalled {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let _ = self.entered.send(());
            // Blocks until opened; once the sender is gone it stays open.
            let _ = self.open.recv();
            lock(&self.written).extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn lines_leave_in_order_and_a_stalled_output_drops_new_lines_instead_of_blocking() {
        let (opener, open) = mpsc::channel();
        let (entering, entered) = mpsc::channel();
        let written = Arc::new(Mutex::new(Vec::new()));
        let buffered = Buffered::start(
            Stalled {
                entered: entering,
                open,
                written: Arc::clone(&written),
            },
            100,
        );
        // The writer takes the first line and stalls on it; the next ones fill the buffer.
        buffered.push(b"line 00\n");
        entered.recv().expect("the writer writes the first line");
        // Eight bytes each: twelve fit in 100 bytes.
        for i in 1..=30 {
            buffered.push(format!("line {i:02}\n").as_bytes());
        }
        assert_eq!(buffered.dropped(), 30 - 12, "pushing never blocked");
        drop(opener);
        buffered.flush();
        let text = String::from_utf8(lock(&written).clone()).expect("UTF-8");
        let expected: String = (0..=12).map(|i| format!("line {i:02}\n")).collect();
        assert_eq!(
            text, expected,
            "whole lines, in order, the dropped ones absent"
        );
    }

    #[test]
    fn a_flush_writes_what_the_writer_thread_has_not_yet_taken() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let (opener, open) = mpsc::channel();
        drop(opener);
        let buffered = Buffered::start(
            Stalled {
                entered: mpsc::channel().0,
                open,
                written: Arc::clone(&written),
            },
            1 << 20,
        );
        for i in 0..1000 {
            buffered.push(format!("{i}\n").as_bytes());
        }
        buffered.flush();
        let lines = lock(&written).iter().filter(|b| **b == b'\n').count();
        assert_eq!((lines, buffered.dropped()), (1000, 0));
    }
}
