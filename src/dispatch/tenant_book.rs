//! The dispatcher's per-tenant bookkeeping, as a plain struct: which emissions wait in memory
//! for which tenant, which tenants are parked, which are catching up after an unpark, and how
//! much of the buffer is used. No I/O, no tasks, no locks: the dispatcher holds it under one
//! mutex and acts on what its methods answer (start a worker, wake the coordinator), so every
//! rule here is tested on its own.
//!
//! The rules it keeps:
//! - a tenant's emissions are queued in its delivery order and taken front to back;
//! - a parked tenant has no queue, and the position-ordered reads leave its rows in the journal;
//! - an unparked tenant catches up: its rows are read by place, page by page, while the
//!   position-ordered reads skip it; once caught up, those reads skip its rows up to the
//!   highest position the catch-up read (already queued), until the reads have passed it;
//! - the buffer counts queued emissions; freeing enough of it for a refill wakes the reader;
//! - with several replicas, only tenants of held buckets are queued, parked or caught up: a
//!   lost bucket's tenants are forgotten at once, and a gained bucket's rows are read again
//!   from the start of the outbox while the buckets held before skip what was already queued;
//! - each queue belongs to one worker (by id): a worker of an earlier holding of the tenant
//!   can neither take from nor drop the queue of the worker that replaced it.

use std::collections::{HashMap, HashSet, VecDeque};

use super::ownership::bucket_of;

/// What the book needs to know of a queued emission.
pub(super) trait BookEntry {
    /// The tenant whose queue it joins.
    fn tenant(&self) -> &str;
    /// Its journal position (the order of the position-ordered reads).
    fn position(&self) -> i64;
    /// Its place in the tenant's delivery order (the order of a catch-up).
    fn place(&self) -> i64;
}

/// Progress of one tenant's catch-up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct CatchUp {
    /// Place of the last emission read.
    pub(super) after_place: i64,
    /// Highest position read so far.
    pub(super) max_position: i64,
}

/// A tenant with work, after [`TenantBook::queue`]: whether it needs a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Queued {
    /// The tenant had no queue: start its worker.
    StartWorker,
    /// Its worker is running and will take the emission in turn.
    Behind,
}

/// One tenant's queue and the worker that delivers it.
struct TenantQueue<E> {
    /// The worker that owns the queue; another worker's calls leave it alone.
    worker: u64,
    /// Emissions read and not yet started, in delivery order.
    items: VecDeque<E>,
}

/// In-memory dispatch state. A tenant has an entry in `queues` while its worker delivers.
pub(super) struct TenantBook<E> {
    /// Emissions read from the journal and not yet started, per tenant, in delivery order.
    queues: HashMap<String, TenantQueue<E>>,
    /// The id of the last worker a queue was created for.
    last_worker: u64,
    /// The buckets this replica holds; `None`: every bucket (the only replica).
    held: Option<HashSet<u16>>,
    /// Per held bucket: rows at or below this position were already queued, so the
    /// position-ordered reads that restarted from the beginning for a gained bucket skip them.
    read_marks: HashMap<u16, i64>,
    /// Tenants behind a dead emission: their pending emissions are not read.
    parked: HashSet<String>,
    /// For parked tenants whose dead emission is durably recorded: when that became known, on
    /// the `durable_clock`. A resync may unpark only these (see [`Self::parked_but_not_in`]).
    parked_durably: HashMap<String, u64>,
    /// Counts [`Self::park_is_durable`] calls: orders them against a resync's read.
    durable_clock: u64,
    /// Unparked tenants whose pending emissions are being read in their delivery order. The
    /// position-ordered reads skip these tenants.
    catching_up: HashMap<String, CatchUp>,
    /// For tenants that caught up: the highest position the catch-up read. The
    /// position-ordered reads skip the tenant's rows up to it (already queued).
    caught_up_to: HashMap<String, i64>,
    /// Emissions held in `queues`, bounded by `buffer`.
    buffered: usize,
    /// Most emissions held in memory at once (`DispatchSettings::buffer`).
    buffer: usize,
}

/// Most emissions read at once. Pages keep the first deliveries of a large backlog from
/// waiting for the whole buffer to be read and encoded, and let the next page be read while
/// the previous one is being delivered.
pub(super) const READ_PAGE: usize = 1000;

impl<E: BookEntry> TenantBook<E> {
    /// An empty book holding at most `buffer` emissions.
    pub(super) fn new(buffer: usize) -> Self {
        TenantBook {
            queues: HashMap::new(),
            last_worker: 0,
            held: None,
            read_marks: HashMap::new(),
            parked: HashSet::new(),
            parked_durably: HashMap::new(),
            durable_clock: 0,
            catching_up: HashMap::new(),
            caught_up_to: HashMap::new(),
            buffered: 0,
            buffer: buffer.max(1),
        }
    }

    /// The free buffer space worth a read: a page, or half the buffer if that is smaller.
    /// Reading whenever a single slot frees up would cost a query per delivered event.
    pub(super) fn refill_threshold(&self) -> usize {
        READ_PAGE.min(self.buffer.div_ceil(2)).max(1)
    }

    /// Free buffer space, with `in_flight` rows read but not queued yet; `None` when it is
    /// below the refill threshold (not worth a read).
    pub(super) fn room_for_read(&self, in_flight: usize) -> Option<usize> {
        let room = self.buffer.saturating_sub(self.buffered + in_flight);
        (room >= self.refill_threshold()).then_some(room)
    }

    /// Emissions queued in memory.
    #[cfg(test)]
    pub(super) fn buffered(&self) -> usize {
        self.buffered
    }

    /// Parked tenants, for the gauge.
    pub(super) fn parked_count(&self) -> usize {
        self.parked.len()
    }

    /// Whether `tenant` is parked.
    #[cfg(test)]
    pub(super) fn is_parked(&self, tenant: &str) -> bool {
        self.parked.contains(tenant)
    }

    /// Whether `tenant`'s bucket is held.
    pub(super) fn holds(&self, tenant: &str) -> bool {
        self.held
            .as_ref()
            .is_none_or(|held| held.contains(&bucket_of(tenant)))
    }

    /// Takes the journal's view (at start, or when buckets were gained) of the tenants of
    /// held buckets: `parked` tenants stay parked; `replayed` tenants (an in-place replay
    /// pending) catch up, so the replay goes before what waited behind it.
    pub(super) fn load(
        &mut self,
        parked: impl IntoIterator<Item = String>,
        replayed: impl IntoIterator<Item = String>,
    ) {
        let parked: Vec<String> = parked.into_iter().filter(|t| self.holds(t)).collect();
        for tenant in &parked {
            // Read from the journal: durable by definition.
            self.parked_durably.entry(tenant.clone()).or_insert(0);
        }
        self.parked.extend(parked);
        for tenant in replayed {
            if self.holds(&tenant) && !self.parked.contains(&tenant) {
                self.catching_up.insert(tenant, CatchUp::default());
            }
        }
    }

    /// Whether a position-ordered read must leave this row to the journal (parked tenant) or
    /// to a catch-up (which reads it, or already did).
    /// Rows of buckets not held are another replica's.
    pub(super) fn leaves_to_others(&self, tenant: &str, position: i64) -> bool {
        !self.holds(tenant)
            || self
                .read_marks
                .get(&bucket_of(tenant))
                .is_some_and(|mark| position <= *mark)
            || self.parked.contains(tenant)
            || self.catching_up.contains_key(tenant)
            || self
                .caught_up_to
                .get(tenant)
                .is_some_and(|until| position <= *until)
    }

    /// Queues a row of a position-ordered read, unless [`Self::leaves_to_others`]; `None` when
    /// it was left.
    pub(super) fn queue_read(&mut self, emission: E) -> Option<(String, Queued)> {
        if self.leaves_to_others(emission.tenant(), emission.position()) {
            return None;
        }
        let tenant = emission.tenant().to_owned();
        let queued = self.queue(emission);
        Some((tenant, queued))
    }

    /// Appends one emission to its tenant's queue.
    fn queue(&mut self, emission: E) -> Queued {
        self.buffered += 1;
        match self.queues.get_mut(emission.tenant()) {
            Some(queue) => {
                queue.items.push_back(emission);
                Queued::Behind
            }
            None => {
                self.last_worker += 1;
                let queue = TenantQueue {
                    worker: self.last_worker,
                    items: VecDeque::from([emission]),
                };
                self.queues
                    .insert(queue.items[0].tenant().to_owned(), queue);
                Queued::StartWorker
            }
        }
    }

    /// The worker id of `tenant`'s queue: what a worker started for it passes back.
    pub(super) fn worker_of(&self, tenant: &str) -> Option<u64> {
        self.queues.get(tenant).map(|queue| queue.worker)
    }

    /// The position-ordered reads have passed `cursor` with nothing in flight: the catch-up
    /// marks and read marks at or below it have done their work.
    pub(super) fn reads_passed(&mut self, cursor: i64) {
        self.caught_up_to.retain(|_, until| *until > cursor);
        self.read_marks.retain(|_, mark| *mark > cursor);
    }

    /// Worker `worker`'s next emission for `tenant`, and whether taking it freed room for a
    /// refill. `None` ends the worker: the tenant's queue is gone, or belongs to another
    /// worker now.
    pub(super) fn take_next(&mut self, tenant: &str, worker: u64) -> Option<(E, bool)> {
        let queue = self.queues.get_mut(tenant).filter(|q| q.worker == worker)?;
        match queue.items.pop_front() {
            Some(emission) => Some((emission, self.release(1))),
            None => {
                self.queues.remove(tenant);
                None
            }
        }
    }

    /// Drops `tenant`'s queue if it is `worker`'s (its worker stops; its emissions stay in
    /// the journal); true if that freed room for a refill.
    pub(super) fn drop_queue(&mut self, tenant: &str, worker: u64) -> bool {
        if self.worker_of(tenant) != Some(worker) {
            return false;
        }
        self.forget_queue(tenant)
    }

    /// Drops `tenant`'s queue, whoever's it is; true if that freed room for a refill.
    fn forget_queue(&mut self, tenant: &str) -> bool {
        let dropped = self
            .queues
            .remove(tenant)
            .map_or(0, |queue| queue.items.len());
        self.release(dropped)
    }

    /// Parks `tenant` behind a dead emission: drops its queue and any catch-up; true if that
    /// freed room for a refill. A tenant of a bucket no longer held is not parked here: its
    /// new owner reads its state from the journal.
    pub(super) fn park(&mut self, tenant: &str) -> bool {
        let room = self.forget_queue(tenant);
        self.catching_up.remove(tenant);
        if self.holds(tenant) {
            self.parked.insert(tenant.to_owned());
        }
        // Parked before its record is written: not durable yet.
        self.parked_durably.remove(tenant);
        room
    }

    /// The dead emission that parked `tenant` is durably recorded now.
    pub(super) fn park_is_durable(&mut self, tenant: &str) {
        self.durable_clock += 1;
        if self.parked.contains(tenant) {
            self.parked_durably
                .insert(tenant.to_owned(), self.durable_clock);
        }
    }

    /// Where the durable clock stands: taken before a resync reads the journal.
    pub(super) fn durable_mark(&self) -> u64 {
        self.durable_clock
    }

    /// Tenants parked here that `journal_parked` (what the journal said in a read that started
    /// at durable clock `mark`) no longer has: an operator unparked them and the notice did not
    /// arrive. Only parkings durable before the read count: a tenant parked again whose dead
    /// record was not committed yet is absent from the read, but still parked.
    pub(super) fn parked_but_not_in(
        &self,
        journal_parked: &HashSet<String>,
        mark: u64,
    ) -> Vec<String> {
        self.parked
            .iter()
            .filter(|tenant| !journal_parked.contains(*tenant))
            .filter(|tenant| {
                self.parked_durably
                    .get(*tenant)
                    .is_some_and(|at| *at <= mark)
            })
            .cloned()
            .collect()
    }

    /// Starts following held buckets (several replicas): holding none until
    /// [`Self::gain`].
    pub(super) fn hold_only(&mut self) {
        self.held = Some(HashSet::new());
    }

    /// Buckets lost: their tenants' queues, parking, catch-ups and marks are forgotten (the
    /// new owner reads them from the journal). True if that freed room for a refill.
    pub(super) fn lose(&mut self, buckets: &HashSet<u16>) -> bool {
        let Some(held) = self.held.as_mut() else {
            return false;
        };
        held.retain(|bucket| !buckets.contains(bucket));
        let lost = |tenant: &String| buckets.contains(&bucket_of(tenant));
        let queued: Vec<String> = self.queues.keys().filter(|t| lost(t)).cloned().collect();
        let mut room = false;
        for tenant in queued {
            room |= self.forget_queue(&tenant);
        }
        self.parked.retain(|tenant| !lost(tenant));
        self.parked_durably.retain(|tenant, _| !lost(tenant));
        self.catching_up.retain(|tenant, _| !lost(tenant));
        self.caught_up_to.retain(|tenant, _| !lost(tenant));
        self.read_marks
            .retain(|bucket, _| !buckets.contains(bucket));
        room
    }

    /// Buckets gained; the position-ordered reads restart from the beginning of the outbox.
    /// `queued_to`: every row up to it of the buckets held before is queued (or left) already,
    /// so those rows are skipped when the reads meet them again.
    pub(super) fn gain(&mut self, buckets: &HashSet<u16>, queued_to: i64) {
        let Some(held) = self.held.as_mut() else {
            return;
        };
        for bucket in held.iter() {
            let mark = self.read_marks.entry(*bucket).or_default();
            *mark = (*mark).max(queued_to);
        }
        for bucket in buckets {
            held.insert(*bucket);
            self.read_marks.remove(bucket);
        }
    }

    /// Unparks `tenant`: it starts catching up. False if it was not parked.
    pub(super) fn unpark(&mut self, tenant: &str) -> bool {
        self.parked_durably.remove(tenant);
        if !self.parked.remove(tenant) {
            return false;
        }
        self.catching_up
            .insert(tenant.to_owned(), CatchUp::default());
        true
    }

    /// A tenant to catch up next, and where its catch-up stands.
    pub(super) fn next_catch_up(&self) -> Option<(String, CatchUp)> {
        self.catching_up
            .iter()
            .next()
            .map(|(tenant, progress)| (tenant.clone(), *progress))
    }

    /// Queues one page of `tenant`'s catch-up, read in its delivery order; `full` says the
    /// page was full (more may follow). Answers whether the tenant needs a worker; `None` if
    /// the catch-up ended meanwhile (parked again), and then nothing is queued.
    pub(super) fn queue_catch_up(
        &mut self,
        tenant: &str,
        page: Vec<E>,
        full: bool,
    ) -> Option<Queued> {
        let mut progress = self.catching_up.remove(tenant)?;
        let mut worker = Queued::Behind;
        for emission in page {
            progress.after_place = emission.place();
            progress.max_position = progress.max_position.max(emission.position());
            if self.queue(emission) == Queued::StartWorker {
                worker = Queued::StartWorker;
            }
        }
        if full {
            self.catching_up.insert(tenant.to_owned(), progress);
        } else {
            let until = self.caught_up_to.entry(tenant.to_owned()).or_default();
            *until = (*until).max(progress.max_position);
        }
        Some(worker)
    }

    /// Takes `count` emissions off the buffer count; true when that frees enough room for a
    /// refill where there was not.
    fn release(&mut self, count: usize) -> bool {
        let threshold = self.refill_threshold();
        let had_room = self.buffer.saturating_sub(self.buffered) >= threshold;
        self.buffered -= count;
        let has_room = self.buffer.saturating_sub(self.buffered) >= threshold;
        has_room && !had_room
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row: tenant, position, place.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Row(&'static str, i64, i64);

    impl BookEntry for Row {
        fn tenant(&self) -> &str {
            self.0
        }
        fn position(&self) -> i64 {
            self.1
        }
        fn place(&self) -> i64 {
            self.2
        }
    }

    fn row(tenant: &'static str, position: i64) -> Row {
        Row(tenant, position, position)
    }

    fn drain<E: BookEntry>(book: &mut TenantBook<E>, tenant: &str) -> Vec<i64> {
        let mut taken = Vec::new();
        let Some(worker) = book.worker_of(tenant) else {
            return taken;
        };
        while let Some((row, _)) = book.take_next(tenant, worker) {
            taken.push(row.position());
        }
        taken
    }

    #[test]
    fn a_tenant_gets_one_worker_and_its_rows_in_order() {
        let mut book = TenantBook::new(100);
        assert_eq!(
            book.queue_read(row("acme", 1)),
            Some(("acme".into(), Queued::StartWorker))
        );
        assert_eq!(
            book.queue_read(row("acme", 3)),
            Some(("acme".into(), Queued::Behind))
        );
        assert_eq!(
            book.queue_read(row("beta", 2)),
            Some(("beta".into(), Queued::StartWorker))
        );
        assert_eq!(book.buffered(), 3);
        assert_eq!(drain(&mut book, "acme"), [1, 3]);
        // The queue is gone once empty: the next row needs a new worker.
        assert_eq!(
            book.queue_read(row("acme", 4)),
            Some(("acme".into(), Queued::StartWorker))
        );
    }

    #[test]
    fn parking_drops_the_queue_and_leaves_later_rows_in_the_journal() {
        let mut book = TenantBook::new(100);
        book.queue_read(row("acme", 1));
        book.queue_read(row("acme", 2));
        book.take_next("acme", book.worker_of("acme").expect("queued"));
        book.park("acme");
        assert!(book.is_parked("acme"));
        assert_eq!(book.buffered(), 0, "the dropped row is off the buffer");
        assert_eq!(book.queue_read(row("acme", 3)), None);
        assert_eq!(drain(&mut book, "acme"), Vec::<i64>::new());
        assert!(
            !book.unpark("beta"),
            "a tenant that is not parked is left alone"
        );
    }

    #[test]
    fn an_unparked_tenant_catches_up_in_place_order_and_reads_skip_what_it_read() {
        let mut book = TenantBook::new(100);
        book.load(["acme".to_owned()], []);
        assert!(book.unpark("acme"));
        // Rows of a position-ordered read meanwhile are the catch-up's.
        assert_eq!(book.queue_read(row("acme", 3)), None);
        let (tenant, progress) = book.next_catch_up().expect("catching up");
        assert_eq!((tenant.as_str(), progress), ("acme", CatchUp::default()));
        // The replay (position 9) takes the dead emission's place (2): it goes first.
        let first_page = vec![Row("acme", 9, 2), row("acme", 3)];
        assert_eq!(
            book.queue_catch_up("acme", first_page, true),
            Some(Queued::StartWorker)
        );
        let (_, progress) = book.next_catch_up().expect("a full page: more to read");
        assert_eq!(
            progress,
            CatchUp {
                after_place: 3,
                max_position: 9
            }
        );
        assert_eq!(
            book.queue_catch_up("acme", vec![row("acme", 4)], false),
            Some(Queued::Behind)
        );
        assert_eq!(book.next_catch_up(), None, "a short page ends the catch-up");
        // The position-ordered reads meet the same rows later: skipped up to position 9.
        for position in [3, 4, 9] {
            assert_eq!(book.queue_read(row("acme", position)), None);
        }
        assert_eq!(drain(&mut book, "acme"), [9, 3, 4]);
        // Once the reads passed position 9, newer rows are theirs again.
        book.reads_passed(8);
        assert_eq!(book.queue_read(row("acme", 9)), None);
        book.reads_passed(9);
        assert!(book.queue_read(row("acme", 10)).is_some());
    }

    #[test]
    fn a_catch_up_that_was_parked_again_queues_nothing() {
        let mut book = TenantBook::new(100);
        book.load([], ["acme".to_owned()]);
        assert!(
            book.next_catch_up().is_some(),
            "an in-place replay catches up at start"
        );
        book.park("acme");
        assert_eq!(
            book.queue_catch_up("acme", vec![row("acme", 1)], false),
            None
        );
        assert_eq!(book.buffered(), 0);
    }

    #[test]
    fn parked_at_start_wins_over_a_pending_replay() {
        let mut book = TenantBook::<Row>::new(100);
        book.load(["acme".to_owned()], ["acme".to_owned()]);
        assert!(book.is_parked("acme"));
        assert_eq!(book.next_catch_up(), None);
    }

    #[test]
    fn freeing_the_buffer_wakes_the_reader_once_per_crossing() {
        // Buffer 4: a read is worth it with 2 free slots.
        let mut book = TenantBook::new(4);
        assert_eq!(book.room_for_read(0), Some(4));
        for position in 1..=4 {
            book.queue_read(row("acme", position));
        }
        assert_eq!(book.room_for_read(0), None);
        let worker = book.worker_of("acme").expect("queued");
        assert!(
            !book.take_next("acme", worker).expect("row").1,
            "1 free: not worth a read"
        );
        assert!(
            book.take_next("acme", worker).expect("row").1,
            "2 free: wake the reader"
        );
        assert!(
            !book.take_next("acme", worker).expect("row").1,
            "already had room"
        );
        assert_eq!(book.room_for_read(1), Some(2), "rows in flight count");
        book.queue_read(row("acme", 5));
        book.queue_read(row("acme", 6));
        assert!(
            !book.drop_queue("acme", worker + 1),
            "another worker's drop leaves the queue"
        );
        assert!(
            book.drop_queue("acme", worker),
            "dropping 3 of 4 frees room"
        );
        assert_eq!(book.buffered(), 0);
    }

    /// Two tenant names in different buckets, and one more in the first one's bucket.
    fn tenants_in_two_buckets() -> (String, String, String) {
        let a = "tenant-0".to_owned();
        let b = (1..)
            .map(|i| format!("tenant-{i}"))
            .find(|t| bucket_of(t) != bucket_of(&a))
            .expect("another bucket");
        let a2 = (1..)
            .map(|i| format!("tenant-{i}"))
            .find(|t| bucket_of(t) == bucket_of(&a) && *t != a)
            .expect("same bucket");
        (a, b, a2)
    }

    /// A row of an owned tenant name.
    #[derive(Debug, Clone, PartialEq, Eq)]
    struct Owned(String, i64);

    impl BookEntry for Owned {
        fn tenant(&self) -> &str {
            &self.0
        }
        fn position(&self) -> i64 {
            self.1
        }
        fn place(&self) -> i64 {
            self.1
        }
    }

    #[test]
    fn only_held_buckets_are_queued_and_a_lost_bucket_is_forgotten_at_once() {
        let (a, b, _) = tenants_in_two_buckets();
        let mut book = TenantBook::new(100);
        book.hold_only();
        assert_eq!(
            book.queue_read(Owned(a.clone(), 1)),
            None,
            "nothing held yet"
        );
        book.gain(&HashSet::from([bucket_of(&a)]), 0);
        book.load([a.clone(), b.clone()], []);
        assert!(book.parked.contains(&a));
        assert!(
            !book.parked.contains(&b),
            "another replica's tenant is not parked here"
        );
        assert!(book.unpark(&a));
        book.queue_catch_up(&a, vec![Owned(a.clone(), 1)], false);
        assert_eq!(book.queue_read(Owned(b.clone(), 2)), None);
        assert_eq!(book.buffered(), 1);
        // One row freed of a buffer of 100: not worth waking the reader for.
        assert!(!book.lose(&HashSet::from([bucket_of(&a)])));
        assert_eq!(book.buffered(), 0, "the lost tenant's queue is gone");
        assert_eq!(book.worker_of(&a), None);
        assert_eq!(book.queue_read(Owned(a.clone(), 3)), None);
        book.park(&a);
        assert!(
            !book.parked.contains(&a),
            "a late park of a lost tenant is not kept"
        );
    }

    #[test]
    fn a_gained_bucket_is_read_from_the_start_while_held_ones_skip_what_they_queued() {
        let (a, b, a2) = tenants_in_two_buckets();
        let mut book = TenantBook::new(100);
        book.hold_only();
        book.gain(&HashSet::from([bucket_of(&a)]), 0);
        assert!(book.queue_read(Owned(a.clone(), 1)).is_some());
        assert_eq!(book.queue_read(Owned(b.clone(), 2)), None);
        assert!(book.queue_read(Owned(a2.clone(), 3)).is_some());
        // b's bucket comes in once the reads queued up to position 3; they start over.
        book.gain(&HashSet::from([bucket_of(&b)]), 3);
        assert_eq!(book.queue_read(Owned(a.clone(), 1)), None, "already queued");
        assert!(
            book.queue_read(Owned(b.clone(), 2)).is_some(),
            "the gained bucket's row"
        );
        assert_eq!(
            book.queue_read(Owned(a2.clone(), 3)),
            None,
            "already queued"
        );
        assert!(
            book.queue_read(Owned(a.clone(), 4)).is_some(),
            "past the mark"
        );
        book.reads_passed(4);
        assert!(book.read_marks.is_empty());
        assert_eq!(drain(&mut book, &a), [1, 4]);
        assert_eq!(drain(&mut book, &b), [2]);
    }

    #[test]
    fn a_worker_of_an_earlier_holding_cannot_touch_its_successors_queue() {
        let (a, _, _) = tenants_in_two_buckets();
        let mut book = TenantBook::new(100);
        book.hold_only();
        book.gain(&HashSet::from([bucket_of(&a)]), 0);
        book.queue_read(Owned(a.clone(), 1));
        let old = book.worker_of(&a).expect("queued");
        book.lose(&HashSet::from([bucket_of(&a)]));
        book.gain(&HashSet::from([bucket_of(&a)]), 0);
        assert_eq!(
            book.queue_read(Owned(a.clone(), 1)).map(|(_, q)| q),
            Some(Queued::StartWorker),
            "the regained tenant gets a new worker"
        );
        let new = book.worker_of(&a).expect("queued");
        assert_ne!(old, new);
        assert_eq!(book.take_next(&a, old), None);
        assert!(!book.drop_queue(&a, old));
        assert_eq!(drain(&mut book, &a), [1]);
    }

    #[test]
    fn a_resync_unparks_only_tenants_whose_parking_was_durable_before_its_read() {
        let mut book = TenantBook::<Row>::new(100);
        book.load(["loaded".to_owned()], []);
        book.park("recorded");
        book.park_is_durable("recorded");
        let mark = book.durable_mark();
        // Parked again after the read began, or with its record still in flight.
        book.park("in-flight");
        book.park("late");
        book.park_is_durable("late");
        let journal_says: HashSet<String> = HashSet::new();
        let mut unparked = book.parked_but_not_in(&journal_says, mark);
        unparked.sort();
        assert_eq!(unparked, ["loaded", "recorded"]);
        // A tenant the journal still has parked stays parked.
        let journal_says = HashSet::from(["loaded".to_owned()]);
        assert_eq!(book.parked_but_not_in(&journal_says, mark), ["recorded"]);
    }
}
