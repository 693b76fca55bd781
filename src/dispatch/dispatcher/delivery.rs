//! Delivering one emission: the attempt loop with its backoff, the attempt records (a delivery's
//! queued without waiting for its fsync, a failure's awaited), and parking on a dead one.

use super::*;

/// Attempts `emission` until it is delivered or dead; `None` if stopped or `grant` lost
/// first.
pub(super) async fn deliver(
    shared: &Arc<Shared>,
    emission: QueuedEmission,
    grant: Grant,
) -> Option<EmissionStatus> {
    let span = tracing::info_span!(
        "dispatch",
        event_id = %emission.event_id,
        emission_id = %emission.emission_id,
        tenant = %emission.tenant,
        sequence = emission.sequence,
    );
    async {
        match &emission.encoded {
            Ok(encoded) => attempt_until_final(shared, &emission, encoded, grant).await,
            Err(error) => {
                // A corrupt row can never be sent: dead at once, recorded like any attempt.
                let now = chrono::Utc::now();
                let record = AttemptRecord {
                    position: emission.position,
                    event_id: emission.event_id,
                    attempt: emission.attempts + 1,
                    started_at: now,
                    finished_at: now,
                    sink: shared.sink.kind(),
                    outcome: AttemptOutcome::Permanent,
                    status_code: None,
                    error: Some(error.to_string()),
                    awaits_workflow: false,
                    emission_status: EmissionStatus::Dead,
                };
                if !shared.ownership.holds(grant) {
                    return None;
                }
                tracing::error!(%error, "event cannot be emitted; it is dead and its tenant parked");
                park(shared, &emission.tenant);
                let recorded = record_durably(shared, record, grant).await;
                if recorded {
                    shared.tenants().park_is_durable(&emission.tenant);
                }
                recorded.then_some(EmissionStatus::Dead)
            }
        }
    }
    .instrument(span)
    .await
}

/// The retry loop of one emission. Losing `grant` is handled like stop: the attempt in flight
/// is cancelled and nothing is recorded, so the new owner sends the same emission again.
async fn attempt_until_final(
    shared: &Arc<Shared>,
    emission: &QueuedEmission,
    encoded: &EncodedEmission,
    grant: Grant,
) -> Option<EmissionStatus> {
    let sink = shared.sink.kind();
    let mut attempt = emission.attempts;
    let mut first_attempt_at = emission.first_attempt_at;
    loop {
        let permit = tokio::select! {
            () = shared.stopped() => return None,
            () = shared.ownership.lost(grant) => return None,
            permit = shared.permits.acquire() => permit.ok()?,
        };
        // Checked after the wait for a permit: no attempt starts once the grant ran out.
        if !shared.ownership.holds(grant) {
            return None;
        }
        attempt += 1;
        shared.health.attempt_started();
        let started_at = chrono::Utc::now();
        let clock = Instant::now();
        let outcome = async {
            tokio::select! {
                () = shared.stopped() => None,
                () = shared.ownership.lost(grant) => None,
                outcome = shared.sink.deliver(&encoded.id, &encoded.body) => Some(outcome),
            }
        }
        .instrument(tracing::info_span!("delivery_attempt", attempt, sink))
        .await;
        let outcome = outcome?;
        shared.health.observe(&outcome);
        drop(permit);
        let elapsed = clock.elapsed();
        let finished_at = chrono::Utc::now();
        let first = *first_attempt_at.get_or_insert(started_at);
        let recorded = match &outcome {
            DeliveryOutcome::Delivered { .. } => AttemptOutcome::Delivered,
            DeliveryOutcome::Retryable { .. } => AttemptOutcome::Retryable,
            DeliveryOutcome::Permanent { .. } => AttemptOutcome::Permanent,
        };
        let (status_code, error) = (outcome.status(), outcome.error().map(str::to_owned));
        let emission_status = match recorded {
            AttemptOutcome::Delivered => EmissionStatus::Delivered,
            AttemptOutcome::Permanent => EmissionStatus::Dead,
            AttemptOutcome::Retryable => {
                let tried_for = (finished_at - first).to_std().unwrap_or_default();
                if shared.settings.retry.exhausted(tried_for) {
                    EmissionStatus::Dead
                } else {
                    EmissionStatus::Pending
                }
            }
        };
        shared
            .metrics
            .deliveries
            .get_or_create(&DeliveryLabels {
                sink,
                outcome: recorded.as_str(),
            })
            .inc();
        shared
            .metrics
            .delivery_seconds
            .get_or_create(&SinkLabels { sink })
            .observe(elapsed.as_secs_f64());
        let record = AttemptRecord {
            position: emission.position,
            event_id: emission.event_id,
            attempt,
            started_at,
            finished_at,
            sink,
            outcome: recorded,
            status_code,
            error: error.clone(),
            emission_status,
            awaits_workflow: shared.settings.await_workflow.is_some(),
        };
        // A record made after the bucket went could race the new owner's record of the same
        // attempt number: leave the emission as stored, for the new owner.
        if !shared.ownership.holds(grant) {
            return None;
        }
        if emission_status == EmissionStatus::Delivered {
            tracing::debug!(attempt, workflow = %encoded.workflow_name, "delivered");
            // With await-workflow the tenant's next emission asks the journal which Workflow
            // it waits for: this delivery must be durable (and readable) before that.
            if shared.settings.await_workflow.is_none() {
                return submit_delivered(shared, record).await;
            }
        }
        if emission_status == EmissionStatus::Dead {
            park(shared, &emission.tenant);
        }
        if !record_durably(shared, record, grant).await {
            return None;
        }
        if emission_status == EmissionStatus::Dead {
            shared.tenants().park_is_durable(&emission.tenant);
        }
        shared.progress.send_modify(|progress| {
            progress.attempts += 1;
            match emission_status {
                EmissionStatus::Delivered => progress.delivered += 1,
                EmissionStatus::Dead => progress.dead += 1,
                EmissionStatus::Pending => {}
            }
        });
        let error = error.unwrap_or_default();
        match emission_status {
            // Recorded durably above (with await-workflow).
            EmissionStatus::Delivered => return Some(emission_status),
            EmissionStatus::Dead => {
                tracing::error!(
                    attempt,
                    status_code,
                    %error,
                    "delivery failed for good: the event is dead and its tenant parked until \
                     an operator replays or skips it"
                );
                return Some(emission_status);
            }
            EmissionStatus::Pending => {
                let wait = shared.settings.retry.backoff(attempt);
                tracing::warn!(
                    attempt,
                    status_code,
                    %error,
                    retry_in = ?wait,
                    "delivery failed; retrying"
                );
                let slept = tokio::select! {
                    slept = sleep_backoff(shared, wait) => slept,
                    () = shared.ownership.lost(grant) => false,
                };
                if !slept {
                    return None;
                }
            }
        }
    }
}

/// Queues the record of a delivered emission and lets the tenant's next emission go without
/// waiting for the commit. Safe for order: the writer commits records in the order they were
/// queued, so a crash can only lose the newest records of a tenant, never one before a kept
/// one, and the restart sends the lost ones again in sequence (at-least-once; the Sensors'
/// Workflow name turns a repeat into a no-op). Progress counts the delivery once it is durable.
async fn submit_delivered(shared: &Arc<Shared>, record: AttemptRecord) -> Option<EmissionStatus> {
    // Submission only fails once the journal is closed.
    let receipt = shared.journal.submit_attempts(vec![record]).await.ok()?;
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        match receipt.durable().await {
            Ok(()) => shared.progress.send_modify(|progress| {
                progress.attempts += 1;
                progress.delivered += 1;
            }),
            Err(error) => tracing::error!(
                error = %crate::telemetry::ErrorChain(&error),
                "recording a delivery failed; the event stays pending and is sent again after \
                 a restart"
            ),
        }
    });
    Some(EmissionStatus::Delivered)
}

/// Writes `record` to the journal, retrying while the store is unavailable; false if the
/// journal closed, the dispatcher stopped or `grant` was lost first (the emission then stays
/// as it was stored).
async fn record_durably(shared: &Shared, record: AttemptRecord, grant: Grant) -> bool {
    loop {
        if !shared.ownership.holds(grant) {
            return false;
        }
        match shared.journal.record_attempts(vec![record.clone()]).await {
            Ok(()) => return true,
            Err(AppendError::Closed) => return false,
            Err(error) => {
                tracing::error!(
                    error = %crate::telemetry::ErrorChain(&error),
                    "recording a delivery attempt failed; retrying in 1 s"
                );
                tokio::select! {
                    () = shared.stopped() => return false,
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}
