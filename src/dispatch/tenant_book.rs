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
//! - the buffer counts queued emissions; freeing enough of it for a refill wakes the reader.

use std::collections::{HashMap, HashSet, VecDeque};

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

/// In-memory dispatch state. A tenant has an entry in `queues` while its worker delivers.
pub(super) struct TenantBook<E> {
    /// Emissions read from the journal and not yet started, per tenant, in delivery order.
    queues: HashMap<String, VecDeque<E>>,
    /// Tenants behind a dead emission: their pending emissions are not read.
    parked: HashSet<String>,
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
            parked: HashSet::new(),
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

    /// Takes the journal's view at start: `parked` tenants stay parked; `replayed` tenants (an
    /// in-place replay pending) catch up, so the replay goes before what waited behind it.
    pub(super) fn load(
        &mut self,
        parked: impl IntoIterator<Item = String>,
        replayed: impl IntoIterator<Item = String>,
    ) {
        self.parked.extend(parked);
        for tenant in replayed {
            if !self.parked.contains(&tenant) {
                self.catching_up.insert(tenant, CatchUp::default());
            }
        }
    }

    /// Whether a position-ordered read must leave this row to the journal (parked tenant) or
    /// to a catch-up (which reads it, or already did).
    pub(super) fn leaves_to_others(&self, tenant: &str, position: i64) -> bool {
        self.parked.contains(tenant)
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
                queue.push_back(emission);
                Queued::Behind
            }
            None => {
                self.queues
                    .insert(emission.tenant().to_owned(), VecDeque::from([emission]));
                Queued::StartWorker
            }
        }
    }

    /// The position-ordered reads have passed `cursor` with nothing in flight: the catch-up
    /// marks at or below it have done their work.
    pub(super) fn reads_passed(&mut self, cursor: i64) {
        self.caught_up_to.retain(|_, until| *until > cursor);
    }

    /// The worker's next emission for `tenant`, and whether taking it freed room for a refill.
    /// `None` ends the worker: the tenant's queue is gone.
    pub(super) fn take_next(&mut self, tenant: &str) -> Option<(E, bool)> {
        let next = self.queues.get_mut(tenant).and_then(VecDeque::pop_front);
        match next {
            Some(emission) => Some((emission, self.release(1))),
            None => {
                self.queues.remove(tenant);
                None
            }
        }
    }

    /// Drops `tenant`'s queue (the dispatcher stops; its emissions stay in the journal); true
    /// if that freed room for a refill.
    pub(super) fn drop_queue(&mut self, tenant: &str) -> bool {
        let dropped = self.queues.remove(tenant).map_or(0, |queue| queue.len());
        self.release(dropped)
    }

    /// Parks `tenant` behind a dead emission: drops its queue and any catch-up; true if that
    /// freed room for a refill.
    pub(super) fn park(&mut self, tenant: &str) -> bool {
        let room = self.drop_queue(tenant);
        self.catching_up.remove(tenant);
        self.parked.insert(tenant.to_owned());
        room
    }

    /// Unparks `tenant`: it starts catching up. False if it was not parked.
    pub(super) fn unpark(&mut self, tenant: &str) -> bool {
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

    fn drain(book: &mut TenantBook<Row>, tenant: &str) -> Vec<i64> {
        let mut taken = Vec::new();
        while let Some((row, _)) = book.take_next(tenant) {
            taken.push(row.1);
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
        book.take_next("acme");
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
        assert!(
            !book.take_next("acme").expect("row").1,
            "1 free: not worth a read"
        );
        assert!(
            book.take_next("acme").expect("row").1,
            "2 free: wake the reader"
        );
        assert!(!book.take_next("acme").expect("row").1, "already had room");
        assert_eq!(book.room_for_read(1), Some(2), "rows in flight count");
        book.queue_read(row("acme", 5));
        book.queue_read(row("acme", 6));
        assert!(book.drop_queue("acme"), "dropping 3 of 4 frees room");
        assert_eq!(book.buffered(), 0);
    }
}
