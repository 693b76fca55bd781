//! Integration tests: one binary (faster to link than one per file).

mod admin;
mod admin_outcomes;
mod argo_chain;
mod argo_webhook;
mod conformance;
mod discovery_kube;
mod discovery_render;
mod dispatch;
mod dispatch_leases;
mod hardening;
mod ingest_api;
mod interop;
mod journal_contract;
mod journal_copy;
mod journal_postgres;
mod manifests;
mod nats;
mod notify;
mod postgres_support;
mod process;
mod replicas;
mod send_sdk;
mod structure;
mod support;
mod tls;
mod workflows;
