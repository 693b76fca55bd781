//! Integration tests: one binary (faster to link than one per file).

mod conformance;
mod discovery_kube;
mod discovery_render;
mod ingest_api;
mod interop;
mod journal_contract;
mod process;
mod support;
