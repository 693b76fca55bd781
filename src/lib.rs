//! tenant-gateway: receives tenant lifecycle CloudEvents, journals them durably, and (in later
//! modules) normalizes and emits them to Argo Events.
//!
//! Layout (one module per domain concept):
//! - [`cloudevents`]: the strict CloudEvents model and HTTP binding.
//! - [`ingest`]: the HTTP API that receives events (and the `send` client).
//! - [`normalize`]: upstream event -> tenant and lifecycle action.
//! - [`journal`]: the durable store, with group commit.
//! - [`discovery`]: the sidecar that turns annotated Jobs into Argo WorkflowTemplates.
//! - [`app`]: `Application`, which wires them for `serve` and for tests.
//! - [`config`], [`cli`], [`telemetry`], [`error`]: configuration, flags, logs, problem+json.

pub mod admin;
pub mod app;
pub mod cli;
pub mod cloudevents;
pub mod config;
pub mod discovery;
pub mod dispatch;
pub mod error;
pub mod ingest;
pub mod journal;
pub mod metrics;
pub mod normalize;
pub mod redact;
pub mod secret_file;
pub mod shutdown;
pub mod telemetry;
