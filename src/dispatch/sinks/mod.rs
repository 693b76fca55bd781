//! Sinks (placeholder; filled in by the sinks work).
