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

/// Displays an error followed by each of its sources: `outer: middle: root`.
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(s) = source {
            write!(f, ": {s}")?;
            source = s.source();
        }
        Ok(())
    }
}
