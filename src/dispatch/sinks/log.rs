//! The `log` sink: one JSON line per emission on stdout, the embedded default (pipe it to `jq`,
//! or let the container runtime collect it).

use std::fmt;
use std::io::Write;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use super::DeliveryOutcome;

/// Writes each emission as one line. Cheap to clone.
#[derive(Clone)]
pub struct LogSink {
    /// Where lines go: stdout in production, a caller's writer in tests.
    target: Target,
}

#[derive(Clone)]
enum Target {
    Stdout,
    /// Shared so clones write to the same place, one whole line at a time.
    Writer(Arc<Mutex<Box<dyn Write + Send>>>),
}

impl fmt::Debug for LogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl LogSink {
    /// The production sink: stdout.
    pub fn stdout() -> LogSink {
        LogSink {
            target: Target::Stdout,
        }
    }

    /// A sink writing to `writer` instead of stdout (tests, embedding programs).
    pub fn to_writer(writer: impl Write + Send + 'static) -> LogSink {
        LogSink {
            target: Target::Writer(Arc::new(Mutex::new(Box::new(writer)))),
        }
    }

    pub(super) fn describe(&self) -> String {
        match self.target {
            Target::Stdout => "log (stdout)".to_owned(),
            Target::Writer(_) => "log (writer)".to_owned(),
        }
    }

    /// Writes the body as one line. The write is blocking, which is fine for this development
    /// sink: a reader that stops reading is backpressure, not lost events. A failed write (stdout
    /// closed) is retryable rather than silently counted as delivered.
    pub(super) fn deliver(&self, body: &Bytes) -> DeliveryOutcome {
        let line = one_line(body);
        let written = match &self.target {
            // Locking per line keeps lines of concurrent deliveries (and other stdout users)
            // from interleaving.
            Target::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(&line).and_then(|()| out.flush())
            }
            Target::Writer(writer) => {
                let mut writer = writer.lock().unwrap_or_else(PoisonError::into_inner);
                writer.write_all(&line).and_then(|()| writer.flush())
            }
        };
        match written {
            Ok(()) => DeliveryOutcome::Delivered { status: None },
            Err(e) => DeliveryOutcome::Retryable {
                status: None,
                error: format!("cannot write the event line: {e}"),
            },
        }
    }
}

/// The body plus a newline, with any line break inside turned into a space. In valid JSON a raw
/// CR or LF can only be whitespace between tokens (strings escape them), so the JSON stays the
/// same; the body is normally compact already and this is a plain copy.
fn one_line(body: &[u8]) -> Vec<u8> {
    let body = body.trim_ascii();
    let mut line = Vec::with_capacity(body.len() + 1);
    line.extend(
        body.iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer tests can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_one_line_per_emission() {
        let out = Shared::default();
        let sink = LogSink::to_writer(out.clone());
        let compact = Bytes::from_static(br#"{"id":"a","data":{"note":"x\ny"}}"#);
        let pretty = Bytes::from_static(b"{\r\n  \"id\": \"b\",\n  \"data\": {}\n}\n");
        assert_eq!(
            sink.deliver(&compact),
            DeliveryOutcome::Delivered { status: None }
        );
        assert_eq!(
            sink.clone().deliver(&pretty),
            DeliveryOutcome::Delivered { status: None }
        );
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text:?}");
        assert_eq!(lines[0].as_bytes(), compact.as_ref());
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["id"], "b");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn a_failing_writer_is_retryable() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let outcome = LogSink::to_writer(Closed).deliver(&Bytes::from_static(b"{}"));
        assert!(
            matches!(outcome, DeliveryOutcome::Retryable { status: None, .. }),
            "{outcome:?}"
        );
    }
}
