//! Dispatch: delivers journaled events, as canonical lifecycle CloudEvents, to the configured sink
//! (DESIGN.md section 5).
//!
//! - `sinks/`: where emissions go (`log`, `webhook`, `eventbus`), one enum chosen from config.

pub mod sinks;
