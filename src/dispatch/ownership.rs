//! Which tenants this replica dispatches, backend-neutral.
//!
//! Tenants fall into [`BUCKETS`] buckets by a stable hash of their name. A replica delivers a
//! tenant only while it holds the tenant's bucket: with one replica (SQLite) it holds every
//! bucket for good ([`TenantOwnership::Everything`]); with several replicas on one PostgreSQL
//! journal the buckets are leased (see `leases`) and the holdings arrive on a watch channel
//! ([`TenantOwnership::Leased`]). Each acquisition of a bucket gets a new [`Grant`], so work
//! started under an earlier holding can tell that it must stop even when the bucket came back.

use std::collections::BTreeMap;
use std::time::Instant;

use tokio::sync::watch;

/// Tenant buckets. Part of the contract between replicas: every replica of one journal must
/// hash tenants into the same buckets, so this is a constant, not a setting. 64 spreads well
/// over a handful of replicas and keeps a lease round a few rows.
pub const BUCKETS: u16 = 64;

/// The bucket of `tenant`: FNV-1a (64 bit) of its name modulo [`BUCKETS`]. Fixed by this code,
/// not by the standard library's hasher (whose output may change between Rust releases), so
/// replicas of different builds agree.
pub fn bucket_of(tenant: &str) -> u16 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let hash = tenant.bytes().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    // The remainder is below BUCKETS, which fits u16.
    u16::try_from(hash % u64::from(BUCKETS)).unwrap_or(0)
}

/// One holding of one bucket: valid while the replica holds the bucket under this grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// The bucket held.
    pub bucket: u16,
    /// Which acquisition of it: a bucket lost and acquired again has a new number.
    pub id: u64,
}

/// The buckets a replica holds right now, as its lease keeper publishes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldBuckets {
    /// Each held bucket and the id of its current grant.
    pub grants: BTreeMap<u16, u64>,
    /// Whether this replica holds the bulk replay job runner's lease.
    pub runs_replay_jobs: bool,
    /// Until when the holdings may be acted on, on this machine's monotonic clock: the lease
    /// expiry as measured from before the renewal was sent, less a safety margin. Past it the
    /// replica holds nothing, even if the keeper could not say so (a hung renewal).
    pub valid_until: Option<Instant>,
}

impl HeldBuckets {
    /// The grants that are still valid at `now` (none once `valid_until` passed).
    pub fn valid_at(&self, now: Instant) -> BTreeMap<u16, u64> {
        match self.valid_until {
            Some(until) if now < until => self.grants.clone(),
            _ => BTreeMap::new(),
        }
    }
}

/// How the dispatcher learns which tenants are its own.
#[derive(Debug, Clone)]
pub enum TenantOwnership {
    /// The only replica: every tenant, always (the SQLite journal).
    Everything,
    /// Leased buckets, published by the lease keeper.
    Leased(watch::Receiver<HeldBuckets>),
}

impl TenantOwnership {
    /// The grant under which this replica may deliver `tenant` now, if any.
    pub fn grant(&self, tenant: &str) -> Option<Grant> {
        let bucket = bucket_of(tenant);
        match self {
            TenantOwnership::Everything => Some(Grant { bucket, id: 0 }),
            TenantOwnership::Leased(held) => {
                let held = held.borrow();
                let valid = held.valid_until.is_some_and(|until| Instant::now() < until);
                held.grants
                    .get(&bucket)
                    .filter(|_| valid)
                    .map(|&id| Grant { bucket, id })
            }
        }
    }

    /// Whether `grant` still holds.
    pub fn holds(&self, grant: Grant) -> bool {
        match self {
            TenantOwnership::Everything => true,
            TenantOwnership::Leased(held) => {
                let held = held.borrow();
                held.valid_until.is_some_and(|until| Instant::now() < until)
                    && held.grants.get(&grant.bucket) == Some(&grant.id)
            }
        }
    }

    /// Whether this replica may run bulk replay jobs now (one replica at a time).
    pub fn runs_replay_jobs(&self) -> bool {
        match self {
            TenantOwnership::Everything => true,
            TenantOwnership::Leased(held) => {
                let held = held.borrow();
                held.runs_replay_jobs && held.valid_until.is_some_and(|u| Instant::now() < u)
            }
        }
    }

    /// Resolves once this replica may run bulk replay jobs (at once for the only replica).
    pub async fn replay_turn(&self) {
        let TenantOwnership::Leased(held) = self else {
            return;
        };
        let mut held = held.clone();
        loop {
            let turn = {
                let current = held.borrow_and_update();
                current.runs_replay_jobs && current.valid_until.is_some_and(|u| Instant::now() < u)
            };
            if turn {
                return;
            }
            if held.changed().await.is_err() {
                // The keeper is gone: never again.
                return std::future::pending().await;
            }
        }
    }

    /// Resolves once `grant` no longer holds: the bucket was lost or given back, its validity
    /// ran out, or the keeper stopped. Never resolves for [`TenantOwnership::Everything`].
    pub async fn lost(&self, grant: Grant) {
        let TenantOwnership::Leased(held) = self else {
            return std::future::pending().await;
        };
        let mut held = held.clone();
        loop {
            let until = {
                let current = held.borrow_and_update();
                if current.grants.get(&grant.bucket) != Some(&grant.id) {
                    return;
                }
                match current.valid_until {
                    Some(until) if Instant::now() < until => until,
                    _ => return,
                }
            };
            tokio::select! {
                changed = held.changed() => if changed.is_err() { return },
                () = tokio::time::sleep_until(until.into()) => return,
            }
        }
    }

    /// The buckets held now, each with its grant; `None` for every bucket, for good.
    pub(super) fn current(&self) -> Option<BTreeMap<u16, u64>> {
        match self {
            TenantOwnership::Everything => None,
            TenantOwnership::Leased(held) => Some(held.borrow().valid_at(Instant::now())),
        }
    }

    /// Resolves when the holdings may have changed (never for `Everything`): a new
    /// publication, or the validity of the current one running out.
    pub(super) async fn changed(&mut self) {
        let TenantOwnership::Leased(held) = self else {
            return std::future::pending().await;
        };
        // Not marked seen here: a publication since the last wait must wake this one.
        let until = held.borrow().valid_until;
        let expiry = async {
            match until {
                Some(until) if Instant::now() < until => {
                    tokio::time::sleep_until(until.into()).await;
                }
                // Already invalid (or nothing held): only a publication changes that.
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = held.changed() => {
                if changed.is_err() {
                    // The keeper is gone: `current` reports nothing held; do not spin.
                    std::future::pending::<()>().await;
                }
            }
            () = expiry => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn buckets_are_stable_and_spread() {
        // Fixed values: a change here would split tenants between replicas of two builds.
        // FNV-1a of "" is the offset basis; of "a" it is 0xaf63dc4c8601ec8c (published test
        // vectors of the FNV reference).
        assert_eq!(bucket_of(""), (0xcbf2_9ce4_8422_2325_u64 % 64) as u16);
        assert_eq!(bucket_of("a"), (0xaf63_dc4c_8601_ec8c_u64 % 64) as u16);
        let mut counts = [0_u32; BUCKETS as usize];
        for t in 0..6400 {
            counts[usize::from(bucket_of(&format!("tenant-{t}")))] += 1;
        }
        // 100 per bucket on average; a usable hash keeps every bucket within a factor of two.
        assert!(
            counts.iter().all(|&c| (50..=200).contains(&c)),
            "{counts:?}"
        );
    }

    #[test]
    fn everything_holds_every_tenant_for_good() {
        let ownership = TenantOwnership::Everything;
        let grant = ownership.grant("acme").expect("held");
        assert!(ownership.holds(grant));
        assert_eq!(ownership.current(), None);
    }

    #[tokio::test]
    async fn a_grant_ends_when_its_bucket_goes_or_comes_back_under_a_new_grant() {
        let bucket = bucket_of("acme");
        let until = Some(Instant::now() + Duration::from_secs(60));
        let (tx, rx) = watch::channel(HeldBuckets {
            grants: BTreeMap::from([(bucket, 1)]),
            runs_replay_jobs: false,
            valid_until: until,
        });
        let ownership = TenantOwnership::Leased(rx);
        let grant = ownership.grant("acme").expect("held");
        assert_eq!(grant, Grant { bucket, id: 1 });
        let lost = tokio::spawn({
            let ownership = ownership.clone();
            async move { ownership.lost(grant).await }
        });
        // Lost and regained before the waiter looks: it still sees that its grant is over.
        tx.send_replace(HeldBuckets::default());
        tx.send_replace(HeldBuckets {
            grants: BTreeMap::from([(bucket, 2)]),
            runs_replay_jobs: false,
            valid_until: until,
        });
        tokio::time::timeout(Duration::from_secs(30), lost)
            .await
            .expect("the old grant is reported lost")
            .expect("no panic");
        assert!(!ownership.holds(grant));
        assert_eq!(ownership.grant("acme"), Some(Grant { bucket, id: 2 }));
    }

    #[tokio::test]
    async fn holdings_past_their_validity_hold_nothing_without_a_new_publication() {
        let bucket = bucket_of("acme");
        let (_tx, rx) = watch::channel(HeldBuckets {
            grants: BTreeMap::from([(bucket, 1)]),
            runs_replay_jobs: true,
            valid_until: Some(Instant::now() + Duration::from_millis(200)),
        });
        let ownership = TenantOwnership::Leased(rx);
        let grant = ownership.grant("acme").expect("held while valid");
        // Nothing is published again (a hung keeper): validity alone ends the holding.
        tokio::time::timeout(Duration::from_secs(30), ownership.lost(grant))
            .await
            .expect("lost at the validity deadline");
        assert_eq!(ownership.grant("acme"), None);
        assert_eq!(ownership.current(), Some(BTreeMap::new()));
        assert!(
            !ownership.runs_replay_jobs(),
            "the runner's lease lapses with the rest"
        );
    }
}
