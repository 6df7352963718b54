//! One JSON object per log line, written straight from the event's fields.
//!
//! The keys are those of `tracing_subscriber`'s JSON format with `flatten_event` (`timestamp`,
//! `level`, each field, `message`, `target`), so log pipelines see no change. That format first
//! collects every field into a map of `serde_json::Value`s and then serialises the map: under
//! callgrind its two lines per event cost about 94,000 instructions. This one writes each field as
//! it is visited, with no allocation but the `Debug` text of a `%`/`?` field.

use std::fmt::{self, Write};

use chrono::{Datelike, Timelike, Utc};
use tracing::{
    Event, Subscriber,
    field::{Field, Visit},
};
use tracing_subscriber::{
    fmt::{FmtContext, FormatEvent, FormatFields, format::Writer},
    registry::LookupSpan,
};

/// The production log format: `{"timestamp":"…Z","level":"INFO","key":value,…,"target":"…"}`.
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut out: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let now = Utc::now();
        // RFC 3339 in UTC with microseconds, as `tracing_subscriber` writes it.
        write!(
            out,
            r#"{{"timestamp":"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z","level":"{}""#,
            now.year(),
            now.month(),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.nanosecond() % 1_000_000_000 / 1_000,
            event.metadata().level(),
        )?;
        let mut fields = Fields {
            out: &mut out,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        out.write_str(r#","target":"#)?;
        string(&mut out, event.metadata().target())?;
        out.write_str("}\n")
    }
}

/// Writes each visited field as `,"name":value`; the first error stops the rest.
struct Fields<'a, 'w> {
    out: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = (|| {
                self.out.write_char(',')?;
                string(self.out, field.name())?;
                self.out.write_char(':')?;
                value(self.out)
            })();
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |out| string(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, |out| {
            out.write_char('"')?;
            write!(Escaped(out), "{value:?}")?;
            out.write_char('"')
        });
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // JSON has no NaN or infinity.
        self.entry(field, |out| {
            if value.is_finite() {
                write!(out, "{value}")
            } else {
                out.write_str("null")
            }
        });
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |out| write!(out, "{value}"));
    }
}

/// `s` as a JSON string, quotes included.
fn string(out: &mut impl Write, s: &str) -> fmt::Result {
    out.write_char('"')?;
    Escaped(out).write_str(s)?;
    out.write_char('"')
}

/// Escapes what it is given for the inside of a JSON string.
struct Escaped<'a, W>(&'a mut W);

impl<W: Write> Write for Escaped<'_, W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut plain = 0;
        for (i, byte) in s.bytes().enumerate() {
            let escape = match byte {
                b'"' => "\\\"",
                b'\\' => "\\\\",
                b'\n' => "\\n",
                b'\r' => "\\r",
                b'\t' => "\\t",
                0..=0x1f => "",
                _ => continue,
            };
            // `i` is at an ASCII byte, so both slices end on character boundaries.
            self.0.write_str(&s[plain..i])?;
            match escape {
                "" => write!(self.0, "\\u{byte:04x}")?,
                _ => self.0.write_str(escape)?,
            }
            plain = i + 1;
        }
        self.0.write_str(&s[plain..])
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
    };

    use serde_json::Value;

    use super::*;

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .expect("not poisoned")
                .extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn emit(json: impl FnOnce(Captured) -> Box<dyn Subscriber + Send + Sync>) -> String {
        let captured = Captured::default();
        tracing::subscriber::with_default(json(captured.clone()), || {
            tracing::warn!(
                text = "a \"quote\", a \\ and\na new line, \u{1} \u{e9}",
                display = %"shown \"as\" text",
                debug = ?Some("x"),
                count = 42u64,
                delta = -7i64,
                ms = 1.25f64,
                nan = f64::NAN,
                ok = true,
                "event {} with {}",
                "message",
                "arguments"
            );
        });
        let bytes = captured.0.lock().expect("not poisoned").clone();
        String::from_utf8(bytes).expect("UTF-8")
    }

    fn ours(out: Captured) -> Box<dyn Subscriber + Send + Sync> {
        Box::new(
            tracing_subscriber::fmt()
                .event_format(JsonLine)
                .with_writer(move || out.clone())
                .finish(),
        )
    }

    fn theirs(out: Captured) -> Box<dyn Subscriber + Send + Sync> {
        Box::new(
            tracing_subscriber::fmt()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_writer(move || out.clone())
                .finish(),
        )
    }

    #[test]
    fn a_line_is_one_json_object_with_every_field_escaped_and_typed() {
        let line = emit(ours);
        assert!(
            line.ends_with("}\n") && line.matches('\n').count() == 1,
            "{line}"
        );
        let v: Value = serde_json::from_str(&line).expect("one JSON object");
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["message"], "event message with arguments");
        assert_eq!(v["text"], "a \"quote\", a \\ and\na new line, \u{1} \u{e9}");
        assert_eq!(v["display"], "shown \"as\" text");
        assert_eq!(v["debug"], "Some(\"x\")");
        assert_eq!(
            (v["count"].as_u64(), v["delta"].as_i64()),
            (Some(42), Some(-7))
        );
        assert_eq!(v["ms"].as_f64(), Some(1.25));
        assert!(v["nan"].is_null() && v["ok"] == true);
        assert_eq!(v["target"], module_path!());
        let at = v["timestamp"].as_str().expect("a timestamp");
        let parsed = chrono::DateTime::parse_from_rfc3339(at).expect("RFC 3339");
        assert!(
            (Utc::now() - parsed.to_utc()).num_seconds().abs() < 60,
            "{at}"
        );
        assert!(at.ends_with('Z') && at.len() == "2026-12-03T11:27:41.123456Z".len());
    }

    #[test]
    fn the_keys_and_values_are_those_of_tracing_subscribers_json_format() {
        let (ours, theirs): (Value, Value) = (
            serde_json::from_str(&emit(ours)).expect("ours"),
            serde_json::from_str(&emit(theirs)).expect("theirs"),
        );
        let keys = |v: &Value| -> Vec<String> {
            let mut keys: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
            keys.sort();
            keys
        };
        assert_eq!(keys(&ours), keys(&theirs));
        for key in keys(&ours).iter().filter(|k| *k != "timestamp") {
            assert_eq!(ours[key], theirs[key], "{key}");
        }
    }
}
