//! Logging: readable lines in sandbox, one JSON object per line in production; `RUST_LOG` sets
//! the levels (default `info`). `json_line.rs` writes the JSON lines, `writer.rs` takes them to
//! stderr without ever holding up a request.

mod json_line;
mod writer;

use std::sync::{Arc, OnceLock};

use serde::Deserialize;
use tracing_subscriber::{EnvFilter, fmt::MakeWriter};

use writer::Buffered;

/// At most this many bytes of log lines wait in memory for a stalled stderr: about 5,000 lines,
/// half a second of a busy service's logs.
const BUFFERED_BYTES: usize = 2 << 20;

static STDERR: OnceLock<Arc<Buffered<std::io::Stderr>>> = OnceLock::new();

/// `[log]`: how log lines look; see `config/default.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Line format.
    pub format: LogFormat,
}

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber; a second call (tests start many apps) is a no-op.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Colours only on a terminal: a redirected log stays plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Stderr)
        .with_ansi(ansi);
    let installed = match format {
        LogFormat::Json => builder.event_format(json_line::JsonLine).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    if installed.is_err() {
        return;
    }
    // A panic's message goes straight to stderr: the lines before it go first.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |panic| {
        if let Some(stderr) = STDERR.get() {
            stderr.try_flush();
        }
        previous(panic);
    }));
}

/// Writes out the log lines still in memory; `main` calls it before the process exits.
pub fn flush() {
    if let Some(stderr) = STDERR.get() {
        stderr.flush();
    }
}

/// The subscriber's writer: each line goes to the buffer in front of stderr.
struct Stderr;

/// One formatted line. `tracing_subscriber` formats a whole line, then writes it with one call.
struct Line;

impl MakeWriter<'_> for Stderr {
    type Writer = Line;

    fn make_writer(&self) -> Line {
        Line
    }
}

impl std::io::Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        STDERR
            .get_or_init(|| Buffered::start(std::io::stderr(), BUFFERED_BYTES))
            .push(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
