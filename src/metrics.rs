//! The gateway's Prometheus metrics, served on the admin listener at `/metrics`.
//!
//! Labels stay low-cardinality: a reason, a sink kind, an outcome. Never the tenant: thousands
//! of tenants would make thousands of series per metric. Label values are `&'static str`, so
//! counting on the delivery path allocates nothing.

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::journal::EventJournal;

/// Why ingest refused a request: the problem type's slug (`invalid-event`, `conflict`, ...).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// The problem slug, from a fixed set.
    pub reason: &'static str,
}

/// One delivery attempt's sink and result.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    /// `log`, `webhook` or `eventbus`.
    pub sink: &'static str,
    /// `delivered`, `retryable` or `permanent`.
    pub outcome: &'static str,
}

/// The sink a latency was measured on.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabels {
    /// `log`, `webhook` or `eventbus`.
    pub sink: &'static str,
}

/// A Workflow phase, in Argo's casing (`Pending`, `Running`, `Succeeded`, `Failed`, `Error`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkflowPhaseLabels {
    /// The phase.
    pub phase: &'static str,
}

/// A lifecycle step's action and what it came to.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LifecycleLabels {
    /// The short action (`upsert`, ...): a handful, fixed by the rules file.
    pub action: String,
    /// `succeeded` or `failed`.
    pub outcome: &'static str,
}

/// A tenant lifecycle (`unknown`, `active`, `migrated-out`, `deleted`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLifecycleLabels {
    /// The lifecycle's spelling.
    pub lifecycle: &'static str,
}

/// How a completion event attempt ended (`[notify]`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// `delivered`, `retried` (an attempt that will be tried again) or `failed` (refused).
    pub outcome: &'static str,
}

/// Every metric of `serve`; cheap to clone (the metric handles are shared).
#[derive(Clone)]
pub struct GatewayMetrics {
    /// The registry `/metrics` encodes.
    registry: Arc<Registry>,
    /// CloudEvents decoded from ingest requests.
    pub events_received: Counter,
    /// Events newly journaled (duplicates not counted).
    pub events_accepted: Counter,
    /// Ingest requests refused, by reason.
    pub requests_rejected: Family<RejectLabels, Counter>,
    /// Delivery attempts, by sink and outcome.
    pub deliveries: Family<DeliveryLabels, Counter>,
    /// Duration of delivery attempts, by sink.
    pub delivery_seconds: Family<SinkLabels, Histogram>,
    /// Emissions not delivered yet; set from the journal at each scrape.
    pub pending_events: Gauge,
    /// Tenants waiting behind a dead emission.
    pub parked_tenants: Gauge,
    /// Pages of pending emissions the dispatcher read from the journal: about one per commit
    /// under live traffic, one per thousand emissions in a backlog. Many more than commits
    /// means reads that find nothing.
    pub dispatch_reads: Counter,
    /// Watched Workflows per phase, from the Workflow watcher's view (empty when not watching).
    pub workflows: Family<WorkflowPhaseLabels, Gauge>,
    /// From an emission's delivery to its Workflow's terminal phase, by action and outcome.
    pub lifecycle_seconds: Family<LifecycleLabels, Histogram>,
    /// Tenants per lifecycle; set from the journal at each scrape.
    pub tenants: Family<TenantLifecycleLabels, Gauge>,
    /// Completion event attempts upstream, by outcome.
    pub notifications: Family<NotificationLabels, Counter>,
}

impl GatewayMetrics {
    /// Registers every metric, including the journal's commit group sizes.
    pub fn new(journal: &EventJournal) -> Self {
        let mut registry = Registry::with_prefix("tenant_gateway");
        let events_received = Counter::default();
        registry.register(
            "events_received",
            "CloudEvents decoded from ingest requests",
            events_received.clone(),
        );
        let events_accepted = Counter::default();
        registry.register(
            "events_accepted",
            "Events newly journaled (duplicates are not counted)",
            events_accepted.clone(),
        );
        let requests_rejected = Family::<RejectLabels, Counter>::default();
        registry.register(
            "ingest_requests_rejected",
            "Ingest requests refused, by problem type",
            requests_rejected.clone(),
        );
        let deliveries = Family::<DeliveryLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Delivery attempts, by sink and outcome",
            deliveries.clone(),
        );
        let delivery_seconds = Family::<SinkLabels, Histogram>::new_with_constructor(|| {
            // 1 ms .. ~65 s: a log line up to a webhook waiting on Argo's publish retries.
            Histogram::new(exponential_buckets(0.001, 2.0, 17))
        });
        registry.register(
            "delivery_duration_seconds",
            "Duration of delivery attempts, by sink",
            delivery_seconds.clone(),
        );
        let pending_events = Gauge::default();
        registry.register(
            "pending_events",
            "Emissions not delivered yet (the dispatch backlog)",
            pending_events.clone(),
        );
        let parked_tenants = Gauge::default();
        registry.register(
            "parked_tenants",
            "Tenants whose deliveries wait behind a dead event",
            parked_tenants.clone(),
        );
        let dispatch_reads = Counter::default();
        registry.register(
            "dispatch_reads",
            "Pages of pending emissions the dispatcher read from the journal",
            dispatch_reads.clone(),
        );
        let workflows = Family::<WorkflowPhaseLabels, Gauge>::default();
        registry.register(
            "workflows",
            "Watched Argo Workflows of the gateway's emissions, by phase",
            workflows.clone(),
        );
        let lifecycle_seconds = Family::<LifecycleLabels, Histogram>::new_with_constructor(|| {
            // 1 s .. ~9 h: a Workflow of a few steps up to a long migration.
            Histogram::new(exponential_buckets(1.0, 2.0, 16))
        });
        registry.register(
            "lifecycle_duration_seconds",
            "From an emission's delivery to its Workflow's terminal phase, by action and outcome",
            lifecycle_seconds.clone(),
        );
        let tenants = Family::<TenantLifecycleLabels, Gauge>::default();
        registry.register(
            "tenants",
            "Tenants per lifecycle (from their last succeeded action), counted at scrape",
            tenants.clone(),
        );
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "notifications",
            "Completion event attempts upstream: delivered, retried, failed (refused)",
            notifications.clone(),
        );
        registry.register(
            "journal_commit_group_size",
            "Rows (events and attempt records) written per journal commit",
            journal.group_sizes(),
        );
        GatewayMetrics {
            registry: Arc::new(registry),
            events_received,
            events_accepted,
            requests_rejected,
            deliveries,
            delivery_seconds,
            pending_events,
            parked_tenants,
            dispatch_reads,
            workflows,
            lifecycle_seconds,
            tenants,
            notifications,
        }
    }

    /// Counts one completion event attempt.
    pub fn count_notification(&self, outcome: &'static str) {
        self.notifications
            .get_or_create(&NotificationLabels { outcome })
            .inc();
    }

    /// Counts one refused ingest request.
    pub fn reject(&self, reason: &'static str) {
        self.requests_rejected
            .get_or_create(&RejectLabels { reason })
            .inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}
