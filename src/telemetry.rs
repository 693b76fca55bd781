//! Logging and tracing setup, and the helper that logs an error with its whole cause chain.

use std::fmt;

use tracing_subscriber::{fmt as tsfmt, EnvFilter};

use crate::config::LogFormat;

/// Default filter when `RUST_LOG` is unset: our own info logs, quiet dependencies.
const DEFAULT_FILTER: &str = "info,sqlx=warn,actix_server=warn";

/// Install the global subscriber. Called once, by `main`; tests do not install one.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    // Colours only for a person at a terminal, never into files or log collectors.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tsfmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    // try_init: a second call (or a subscriber installed by an embedding program) is not fatal.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
}

/// Displays an error followed by each of its sources on one line: `outer: middle: root`. A
/// source whose text its error already shows (many wrappers repeat their cause) is left out;
/// the one error-chain format of logs, records and messages.
pub struct ErrorChain<'a>(pub &'a dyn std::error::Error);

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !shown.contains(&text) {
                write!(f, ": {text}")?;
            }
            shown = text;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorChain;

    /// An error with a message and an optional cause.
    #[derive(Debug)]
    struct Failure(&'static str, Option<Box<Failure>>);

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Failure {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    fn chain(messages: &[&'static str]) -> Failure {
        messages
            .iter()
            .rev()
            .fold(None, |cause, message| {
                Some(Failure(message, cause.map(Box::new)))
            })
            .expect("at least one message")
    }

    #[test]
    fn causes_follow_on_one_line() {
        assert_eq!(ErrorChain(&chain(&["a"])).to_string(), "a");
        assert_eq!(
            ErrorChain(&chain(&[
                "cannot connect",
                "tls handshake",
                "bad certificate"
            ]))
            .to_string(),
            "cannot connect: tls handshake: bad certificate"
        );
    }

    #[test]
    fn causes_the_message_already_shows_are_left_out() {
        let error = chain(&["request failed: timed out", "timed out", "os error 110"]);
        assert_eq!(
            ErrorChain(&error).to_string(),
            "request failed: timed out: os error 110"
        );
    }
}
