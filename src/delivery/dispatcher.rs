//! The in-memory queue of held deliveries, fair across endpoints.
//!
//! Each endpoint has a lane with a concurrency cap; endpoints with work and
//! spare capacity take turns (round robin), so one slow or black-holed
//! endpoint fills only its own lane while the others keep flowing. Totals are
//! bounded too: at most `max_in_flight` sends at once, and at most
//! `max_queued` deliveries taking `max_queued_bytes` in memory, whatever the
//! backlog in the store. A delivery is counted at its job's size plus its
//! event's payload (an event shared by several deliveries is counted for
//! each, which errs on the safe side).
//!
//! Deliveries that found memory full wait in the store. While any may be
//! waiting (the backlog flag), the dispatcher asks the poller for more as
//! soon as memory drains to half full, overall or in a lane, instead of
//! leaving the senders idle until the poller's next round.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use super::Job;
use crate::domain::ids::EndpointId;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Sends in flight to one endpoint.
    pub per_endpoint_in_flight: usize,
    /// Deliveries waiting in memory for one endpoint.
    pub per_endpoint_queued: usize,
    /// Sends in flight in total.
    pub max_in_flight: usize,
    /// Deliveries waiting in memory in total.
    pub max_queued: usize,
    /// Memory those may take, in bytes (see [`cost`]).
    pub max_queued_bytes: usize,
}

impl Limits {
    /// Whether memory is at most half full, by count and by bytes.
    fn half_empty(&self, state: &State) -> bool {
        state.queued <= self.max_queued / 2 && state.queued_bytes <= self.max_queued_bytes / 2
    }
}

/// What a queued delivery of an event with a `payload_len`-byte payload
/// counts against `max_queued_bytes`.
pub(super) fn cost(payload_len: usize) -> usize {
    std::mem::size_of::<Job>() + payload_len
}

/// What a delivery is assumed to cost before anything was queued.
const FIRST_GUESS: usize = 1024;

#[derive(Default)]
struct Lane {
    queue: VecDeque<Job>,
    /// Places promised to deliveries being committed.
    reserved: usize,
    in_flight: usize,
    /// Whether the lane is in `ready`.
    ready: bool,
    /// A claim skipped this lane because it was full: the store may hold
    /// deliveries for it.
    skipped: bool,
}

impl Lane {
    fn waiting(&self) -> usize {
        self.queue.len() + self.reserved
    }
}

#[derive(Default)]
struct State {
    lanes: HashMap<EndpointId, Lane>,
    /// Lanes with queued work and spare capacity, in turn order.
    ready: VecDeque<EndpointId>,
    queued: usize,
    /// What the queued and reserved deliveries cost, by [`cost`].
    queued_bytes: usize,
    in_flight: usize,
    /// A moving average of what deliveries cost, to size claims by.
    typical_cost: usize,
}

pub(super) struct Dispatcher {
    limits: Limits,
    state: Mutex<State>,
    wake: Notify,
    /// The store may hold due deliveries that no node holds.
    backlog: AtomicBool,
    /// Notified when memory drains to half full while `backlog` is set.
    refill: Notify,
}

/// Room for more work, as the poller sees it.
#[derive(Debug, Default)]
pub(super) struct Capacity {
    /// How many more deliveries memory can take.
    pub(super) free: usize,
    /// Endpoints whose lanes are full: claiming more for them is pointless.
    pub(super) full: Vec<EndpointId>,
}

impl Dispatcher {
    pub(super) fn new(limits: Limits) -> Self {
        Self {
            limits,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            backlog: AtomicBool::new(false),
            refill: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain counters behind;
        // carrying on with them is better than taking the engine down.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Promises memory for one delivery to `endpoint`, costing `cost`,
    /// before it is committed. `false` means: store it for the poller
    /// instead.
    pub(super) fn try_reserve(&self, endpoint: &EndpointId, cost: usize) -> bool {
        let mut state = self.state();
        if state.queued >= self.limits.max_queued
            || state.queued_bytes + cost > self.limits.max_queued_bytes
        {
            return false;
        }
        let lane = state.lanes.entry(endpoint.clone()).or_default();
        if lane.waiting() >= self.limits.per_endpoint_queued {
            return false;
        }
        lane.reserved += 1;
        state.queued += 1;
        state.queued_bytes += cost;
        true
    }

    /// Gives back a reservation (of `cost`) whose delivery was not stored.
    pub(super) fn unreserve(&self, endpoint: &EndpointId, cost: usize) {
        let mut state = self.state();
        if let Some(lane) = state.lanes.get_mut(endpoint) {
            lane.reserved = lane.reserved.saturating_sub(1);
            state.queued = state.queued.saturating_sub(1);
            state.queued_bytes = state.queued_bytes.saturating_sub(cost);
        }
        state.drop_idle_lane(endpoint);
    }

    /// Queues a delivery whose place was reserved.
    pub(super) fn push_reserved(&self, job: Job) {
        let mut state = self.state();
        let lane = state.lanes.entry(job.endpoint_id.clone()).or_default();
        lane.reserved = lane.reserved.saturating_sub(1);
        state.queued = state.queued.saturating_sub(1);
        state.queued_bytes = state.queued_bytes.saturating_sub(job.cost());
        self.enqueue(&mut state, job);
    }

    /// Queues a delivery claimed from the store.
    pub(super) fn push_claimed(&self, job: Job) {
        let mut state = self.state();
        self.enqueue(&mut state, job);
    }

    fn enqueue(&self, state: &mut State, job: Job) {
        let cost = job.cost();
        // An average over about the last thousand deliveries queued.
        state.typical_cost = if state.typical_cost == 0 {
            cost
        } else {
            state.typical_cost - state.typical_cost / 1024 + cost / 1024
        };
        let endpoint = job.endpoint_id.clone();
        let lane = state.lanes.entry(endpoint.clone()).or_default();
        lane.queue.push_back(job);
        let make_ready = !lane.ready && lane.in_flight < self.limits.per_endpoint_in_flight;
        if make_ready {
            lane.ready = true;
            state.ready.push_back(endpoint);
        }
        state.queued += 1;
        state.queued_bytes += cost;
        self.wake.notify_one();
    }

    /// The next delivery to send, if any lane may send and the total allows.
    pub(super) fn next(&self) -> Option<Job> {
        let mut state = self.state();
        if state.in_flight >= self.limits.max_in_flight {
            return None;
        }
        while let Some(endpoint) = state.ready.pop_front() {
            let cap = self.limits.per_endpoint_in_flight;
            let Some(lane) = state.lanes.get_mut(&endpoint) else {
                continue;
            };
            lane.ready = false;
            let Some(job) = lane.queue.pop_front() else {
                continue;
            };
            lane.in_flight += 1;
            // Crossings, not levels: one ask per drain, however many lanes
            // sit below half.
            // A lane claims skipped asks on its own behalf; the backlog
            // flag lets any crossing ask.
            let backlog = self.backlog.load(Ordering::Acquire);
            let lane_asks =
                lane.waiting() == self.limits.per_endpoint_queued / 2 && (lane.skipped || backlog);
            if lane_asks {
                lane.skipped = false;
            }
            if !lane.queue.is_empty() && lane.in_flight < cap {
                lane.ready = true;
                state.ready.push_back(endpoint);
            }
            let was_half_empty = self.limits.half_empty(&state);
            state.queued -= 1;
            state.queued_bytes = state.queued_bytes.saturating_sub(job.cost());
            state.in_flight += 1;
            let drained_to_half = !was_half_empty && self.limits.half_empty(&state);
            if lane_asks || (backlog && drained_to_half) {
                self.refill.notify_one();
            }
            return Some(job);
        }
        None
    }

    /// A send to `endpoint` finished.
    pub(super) fn complete(&self, endpoint: &EndpointId) {
        let mut state = self.state();
        state.in_flight = state.in_flight.saturating_sub(1);
        if let Some(lane) = state.lanes.get_mut(endpoint) {
            lane.in_flight = lane.in_flight.saturating_sub(1);
            if !lane.ready && !lane.queue.is_empty() {
                lane.ready = true;
                state.ready.push_back(endpoint.clone());
            }
        }
        state.drop_idle_lane(endpoint);
        self.wake.notify_one();
    }

    /// Says that the store may hold due deliveries no node holds: some
    /// found memory full, or a claim stopped before taking all there was.
    pub(super) fn note_backlog(&self) {
        self.backlog.store(true, Ordering::Release);
        // Memory may have drained past half before the flag was up.
        if self.half_empty() {
            self.refill.notify_one();
        }
    }

    /// Marks `lanes`, which a claim skipped because they were full, to ask
    /// for a refill when they drain to half; says whether one of them
    /// already has. Unlike `note_backlog` this leaves the other lanes and
    /// the total alone: otherwise a full lane with a backlog would have
    /// every send elsewhere that brings memory back to half ask for a claim
    /// that can only skip it again.
    pub(super) fn note_skipped(&self, lanes: &[EndpointId]) -> bool {
        let mut state = self.state();
        let half = self.limits.per_endpoint_queued / 2;
        let mut drained = false;
        for id in lanes {
            match state.lanes.get_mut(id) {
                Some(lane) if lane.waiting() > half => lane.skipped = true,
                _ => drained = true,
            }
        }
        drained
    }

    /// Clears the backlog flag, returning it: for a claim about to look.
    pub(super) fn take_backlog(&self) -> bool {
        self.backlog.swap(false, Ordering::AcqRel)
    }

    /// Whether memory is at most half full in total.
    pub(super) fn half_empty(&self) -> bool {
        self.limits.half_empty(&self.state())
    }

    /// Resolves when memory has drained to half full with a backlog waiting.
    pub(super) async fn refill_wanted(&self) {
        self.refill.notified().await;
    }

    /// Resolves when there may be something new to do.
    pub(super) async fn changed(&self) {
        self.wake.notified().await;
    }

    /// Room for more, as the poller sizes a claim: by count, and by bytes
    /// at what deliveries have typically cost (a claim learns the payloads
    /// only once it has them).
    pub(super) fn capacity(&self) -> Capacity {
        let state = self.state();
        let typical = match state.typical_cost {
            0 => FIRST_GUESS,
            typical => typical,
        };
        let bytes_free = self
            .limits
            .max_queued_bytes
            .saturating_sub(state.queued_bytes);
        // Half empty, a claim takes at least one, however large deliveries
        // have been: otherwise deliveries larger than half the memory would
        // wait in the store for good.
        let by_bytes = if self.limits.half_empty(&state) {
            (bytes_free / typical).max(1)
        } else {
            bytes_free / typical
        };
        Capacity {
            free: self
                .limits
                .max_queued
                .saturating_sub(state.queued)
                .min(by_bytes),
            full: state
                .lanes
                .iter()
                .filter(|(_, lane)| lane.waiting() >= self.limits.per_endpoint_queued)
                .map(|(id, _)| id.clone())
                .collect(),
        }
    }

    /// Takes every queued (not in-flight) delivery out, for shutdown.
    pub(super) fn drain_queued(&self) -> Vec<Job> {
        let mut state = self.state();
        let mut jobs = Vec::new();
        for lane in state.lanes.values_mut() {
            jobs.extend(lane.queue.drain(..));
            lane.ready = false;
        }
        state.ready.clear();
        state.queued = state.queued.saturating_sub(jobs.len());
        let bytes: usize = jobs.iter().map(Job::cost).sum();
        state.queued_bytes = state.queued_bytes.saturating_sub(bytes);
        jobs
    }

    pub(super) fn in_flight(&self) -> usize {
        self.state().in_flight
    }
}

impl State {
    /// Forgets lanes with nothing in them, so memory follows the work, not
    /// the number of endpoints ever seen.
    fn drop_idle_lane(&mut self, endpoint: &EndpointId) {
        if self
            .lanes
            .get(endpoint)
            .is_some_and(|l| l.queue.is_empty() && l.reserved == 0 && l.in_flight == 0 && !l.ready)
        {
            self.lanes.remove(endpoint);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::tests::job_for;

    fn limits() -> Limits {
        Limits {
            per_endpoint_in_flight: 2,
            per_endpoint_queued: 3,
            max_in_flight: 3,
            max_queued: 5,
            max_queued_bytes: usize::MAX,
        }
    }

    /// A job for endpoint 1 whose event's payload is a JSON string of
    /// `chars` characters.
    fn job_with_payload(chars: usize) -> Job {
        let mut job = job_for(1);
        let mut event = (*job.event).clone();
        event.payload =
            crate::domain::event::Payload::parse(&format!("\"{}\"", "x".repeat(chars)), chars + 2)
                .unwrap();
        job.event = std::sync::Arc::new(event);
        job
    }

    #[test]
    fn lanes_take_turns_and_respect_their_cap() {
        let d = Dispatcher::new(Limits {
            max_queued: 100,
            per_endpoint_queued: 100,
            ..limits()
        });
        let (a, b) = (job_for(1), job_for(2));
        for _ in 0..3 {
            d.push_claimed(a.clone());
        }
        d.push_claimed(b.clone());
        let order: Vec<_> = std::iter::from_fn(|| d.next())
            .map(|j| j.endpoint_id)
            .collect();
        // a, b, a: then a is at its cap of 2 and the total cap of 3 is reached.
        assert_eq!(
            order,
            vec![
                a.endpoint_id.clone(),
                b.endpoint_id.clone(),
                a.endpoint_id.clone()
            ]
        );
        d.complete(&b.endpoint_id);
        assert!(d.next().is_none(), "a is still at its cap");
        d.complete(&a.endpoint_id);
        assert_eq!(d.next().map(|j| j.endpoint_id), Some(a.endpoint_id));
    }

    /// Whether a refill was asked for since the last call.
    fn refill_asked(d: &Dispatcher) -> bool {
        use std::future::Future;
        let mut wanted = std::pin::pin!(d.refill_wanted());
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        wanted.as_mut().poll(&mut cx).is_ready()
    }

    #[test]
    fn a_lane_drained_to_half_asks_for_a_refill_only_with_a_backlog() {
        let d = Dispatcher::new(Limits {
            per_endpoint_in_flight: 10,
            per_endpoint_queued: 4,
            max_in_flight: 10,
            max_queued: 100,
            max_queued_bytes: usize::MAX,
        });
        let a = job_for(1);
        for _ in 0..4 {
            d.push_claimed(a.clone());
        }
        // No backlog: draining asks for nothing.
        assert!(d.next().is_some() && d.next().is_some());
        assert!(!refill_asked(&d));

        for _ in 0..2 {
            d.push_claimed(a.clone());
        }
        d.note_backlog();
        assert!(refill_asked(&d), "memory is under half full already");
        assert!(d.next().is_some());
        assert!(!refill_asked(&d), "3 of 4 waiting: not yet half");
        assert!(d.next().is_some());
        assert!(refill_asked(&d), "2 of 4 waiting: half");
        assert!(d.next().is_some());
        assert!(!refill_asked(&d), "asked once per drain, not per send");
        assert!(d.take_backlog() && !d.take_backlog());
    }

    #[test]
    fn a_skipped_lane_asks_for_itself_and_leaves_the_total_alone() {
        let d = Dispatcher::new(Limits {
            per_endpoint_in_flight: 100,
            per_endpoint_queued: 4,
            max_in_flight: 100,
            max_queued: 8,
            max_queued_bytes: usize::MAX,
        });
        let (full, other) = (job_for(1), job_for(2));
        for _ in 0..4 {
            d.push_claimed(full.clone());
        }
        assert!(!d.note_skipped(std::slice::from_ref(&full.endpoint_id)));
        d.push_claimed(other.clone());
        // Lanes take turns: full, other, full.
        assert_eq!(d.next().unwrap().endpoint_id, full.endpoint_id);
        assert!(
            !refill_asked(&d),
            "the total back at half asks nothing: a claim would only skip the full lane again"
        );
        assert_eq!(d.next().unwrap().endpoint_id, other.endpoint_id);
        assert!(!refill_asked(&d));
        assert_eq!(d.next().unwrap().endpoint_id, full.endpoint_id);
        assert!(refill_asked(&d), "the skipped lane drained to half");
        assert!(
            d.note_skipped(std::slice::from_ref(&full.endpoint_id)),
            "drained"
        );
    }

    #[test]
    fn reservations_bound_memory_per_endpoint_and_in_total() {
        let d = Dispatcher::new(limits());
        let a = job_for(1).endpoint_id;
        let b = job_for(2).endpoint_id;
        assert!((0..3).all(|_| d.try_reserve(&a, 1)));
        assert!(!d.try_reserve(&a, 1), "lane full");
        assert_eq!(d.capacity().full, vec![a.clone()]);
        assert!(d.try_reserve(&b, 1) && d.try_reserve(&b, 1));
        assert!(!d.try_reserve(&b, 1), "total full");
        assert_eq!(d.capacity().free, 0);
        d.unreserve(&b, 1);
        assert_eq!(d.capacity().free, 1);
    }

    #[test]
    fn memory_is_bounded_in_bytes_too() {
        let job = job_for(1);
        let each = job.cost();
        let d = Dispatcher::new(Limits {
            max_queued: 100,
            per_endpoint_queued: 100,
            max_queued_bytes: 3 * each,
            ..limits()
        });
        let a = &job.endpoint_id;
        assert!((0..3).all(|_| d.try_reserve(a, each)));
        assert!(
            !d.try_reserve(a, each),
            "three deliveries' worth of bytes taken"
        );
        assert_eq!(d.capacity().free, 0);
        d.push_reserved(job.clone());
        let sent = d.next().expect("queued");
        assert_eq!(d.capacity().free, 1, "one delivery's bytes back: {each}");
        d.complete(&sent.endpoint_id);
        d.unreserve(a, each);
        d.unreserve(a, each);
        assert_eq!(d.capacity().free, 3);
        assert_eq!(d.state().queued_bytes, 0);
    }

    #[test]
    fn a_claim_is_sized_by_what_deliveries_typically_cost() {
        let job = job_with_payload(10_000);
        let d = Dispatcher::new(Limits {
            max_queued: 1_000,
            per_endpoint_queued: 1_000,
            max_queued_bytes: 100 * job.cost(),
            ..limits()
        });
        assert_eq!(d.capacity().free, 100 * job.cost() / FIRST_GUESS);
        d.push_claimed(job.clone());
        // Once a delivery of about 10 kB is seen, a claim takes about as
        // many as fit.
        assert_eq!(d.capacity().free, 99);
    }

    #[test]
    fn deliveries_larger_than_half_the_memory_are_claimed_one_at_a_time() {
        let job = job_with_payload(900);
        let d = Dispatcher::new(Limits {
            max_queued: 1_000,
            per_endpoint_queued: 1_000,
            max_queued_bytes: job.cost() * 4 / 5,
            ..limits()
        });
        d.push_claimed(job.clone());
        d.complete(&d.next().unwrap().endpoint_id);
        assert_eq!(d.capacity().free, 1, "empty memory takes one");
        d.push_claimed(job.clone());
        assert_eq!(d.capacity().free, 0, "one in memory: full");
    }

    #[test]
    fn a_blocked_endpoint_does_not_hold_back_others() {
        let d = Dispatcher::new(Limits {
            max_in_flight: 10,
            max_queued: 100,
            per_endpoint_queued: 100,
            ..limits()
        });
        let slow = job_for(1);
        for _ in 0..50 {
            d.push_claimed(slow.clone());
        }
        // The slow endpoint's two sends never complete.
        assert!(d.next().is_some() && d.next().is_some());
        let fast = job_for(2);
        for _ in 0..20 {
            d.push_claimed(fast.clone());
            let job = d.next().expect("the fast endpoint is served");
            assert_eq!(job.endpoint_id, fast.endpoint_id);
            d.complete(&job.endpoint_id);
        }
    }

    #[test]
    fn idle_lanes_are_forgotten_and_drain_returns_queued_work() {
        let d = Dispatcher::new(limits());
        let a = job_for(1);
        d.push_claimed(a.clone());
        let job = d.next().unwrap();
        d.complete(&job.endpoint_id);
        assert!(d.state().lanes.is_empty());
        d.push_claimed(a.clone());
        d.push_claimed(a.clone());
        assert_eq!(d.drain_queued().len(), 2);
        assert!(d.next().is_none());
        assert_eq!(d.capacity().free, 5);
    }
}
