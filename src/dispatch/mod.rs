//! Dispatch: delivers journaled events, as canonical lifecycle CloudEvents, to the configured sink
//! (see `docs/dispatch.md`).
//!
//! - `dispatcher`: the outbox reader; concurrent across tenants, in sequence within a tenant,
//!   retries with backoff, dead events park their tenant until [`DispatchControl::unpark`].
//! - `emission`: a pending emission -> the canonical CloudEvent's bytes.
//! - `retry`: backoff with jitter and the retry limit.
//! - `tenant_book`: the dispatcher's per-tenant bookkeeping (queues, parked tenants, catch-ups,
//!   the buffer), a plain struct with its own tests.
//! - `ownership`: which tenants this replica delivers (tenant buckets, grants), backend-neutral.
//! - `leases`: the PostgreSQL leases on tenant buckets that spread dispatch over replicas, and
//!   the peer notifications (unparks, commits).
//! - `sinks/`: where emissions go (`log`, `webhook`, `eventbus`), one enum chosen from config.

mod dispatcher;
pub mod emission;
pub mod leases;
pub mod ownership;
mod retry;
pub mod sinks;
mod tenant_book;

pub use dispatcher::{
    DispatchControl, DispatchProgress, DispatchScope, DispatchSettings, Dispatcher,
    DEFAULT_AWAIT_TIMEOUT,
};
pub use emission::canonical_json;
pub use retry::RetryPolicy;
