//! Tests of the budget: queue order, timeouts, the park, capacity changes, the marks.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use super::*;

#[test]
fn charges_and_releases_balance() {
    let budget = MemoryBudget::new(100);
    assert!(!budget.charge(60));
    assert!(!budget.charge(40));
    assert!(budget.charge(1));
    assert!(budget.is_over());
    budget.release(101);
    assert_eq!(budget.in_use(), 0);
    assert!(!budget.is_over());
}

#[test]
fn reservations_merge_release_and_return() {
    let budget = MemoryBudget::new(100);
    let mut a = budget.try_reserve(40).unwrap();
    let b = budget.try_reserve(30).unwrap();
    assert_eq!((budget.in_use(), budget.reserved()), (70, 70));
    a.merge(b);
    assert_eq!(a.bytes(), 70);
    a.release(25);
    assert_eq!(budget.available(), 55);
    a.release(1000);
    assert_eq!(a.bytes(), 0);
    assert_eq!((budget.in_use(), budget.reserved()), (0, 0));
    assert_eq!(
        budget.try_reserve(101).unwrap_err(),
        BudgetError::LargerThanBudget {
            requested: 101,
            total: 100
        }
    );
    assert_eq!(budget.try_reserve(0).unwrap().bytes(), 0);
}

#[test]
fn prepaid_reservations_mirror_their_bytes() {
    let budget = MemoryBudget::new(100);
    let request = RequestBudget::new(budget.clone());
    let mut r = request.try_reserve(30).unwrap();
    assert_eq!((request.prepaid(), budget.in_use()), (30, 30));
    r.merge(budget.try_reserve(10).unwrap());
    assert_eq!((request.prepaid(), budget.in_use()), (40, 40));
    r.release(15);
    assert_eq!((request.prepaid(), budget.in_use()), (25, 25));
    drop(r);
    assert_eq!((request.prepaid(), budget.in_use()), (0, 0));
}

#[tokio::test]
async fn the_queue_is_first_come_first_served() {
    let budget = MemoryBudget::new(100);
    let held = budget.try_reserve(90).unwrap();
    let big = budget.admit(50, Duration::from_secs(5));
    assert!(!big.is_granted());
    // A small one that would fit still queues behind the big one.
    assert!(!budget.try_admit(5));
    let small = budget.admit(5, Duration::from_secs(5));
    assert!(!small.is_granted());
    assert_eq!(budget.queue_len(), 2);
    drop(held);
    let (big, small) = tokio::join!(
        async {
            let mut big = big;
            (&mut big).await.unwrap();
            big.take()
        },
        async {
            let mut small = small;
            (&mut small).await.unwrap();
            small.take()
        }
    );
    assert_eq!((big, small), (50, 5));
    assert_eq!(budget.in_use(), 55);
    assert_eq!(budget.stats().admitted_after_wait, 2);
    budget.note_reserved(-55);
    budget.release(55);
    assert_eq!((budget.in_use(), budget.reserved()), (0, 0));
}

#[tokio::test]
async fn waits_time_out_and_the_queue_is_bounded() {
    let budget = MemoryBudget::with_max_queue(100, 1);
    let held = budget.try_reserve(80).unwrap();
    let err = budget
        .reserve(50, Duration::from_millis(20))
        .await
        .unwrap_err();
    assert!(matches!(err, BudgetError::Exhausted { requested: 50, .. }));
    assert_eq!((budget.in_use(), budget.queue_len()), (80, 0));
    let waiting = budget.admit(50, Duration::from_secs(5));
    let refused = budget.admit(10, Duration::from_secs(5));
    assert_eq!(
        refused.await.unwrap_err(),
        BudgetError::QueueFull {
            requested: 10,
            max: 1
        }
    );
    // A waiter dropped before its grant leaves the queue and takes nothing.
    drop(waiting);
    assert_eq!(budget.queue_len(), 0);
    drop(held);
    assert_eq!(budget.in_use(), 0);
    assert_eq!(budget.stats().rejected, 2);
}

#[tokio::test]
async fn a_waiter_granted_and_dropped_gives_its_bytes_back() {
    let budget = MemoryBudget::new(100);
    let held = budget.try_reserve(100).unwrap();
    let waiting = budget.admit(60, Duration::from_secs(5));
    drop(held);
    // Granted by the release, never polled.
    assert_eq!(budget.in_use(), 60);
    drop(waiting);
    assert_eq!((budget.in_use(), budget.reserved()), (0, 0));
}

#[tokio::test]
async fn an_oversized_reservation_runs_alone() {
    let budget = MemoryBudget::new(100);
    let held = budget.try_reserve(10).unwrap();
    let mut alone = budget.admit(500, Duration::from_secs(5));
    assert!(!alone.is_granted());
    drop(held);
    (&mut alone).await.unwrap();
    assert_eq!(budget.in_use(), 500);
    drop(alone);
    assert_eq!(budget.in_use(), 0);
}

#[tokio::test]
async fn parked_requests_wake_oldest_first_and_hold_back_admissions() {
    let budget = MemoryBudget::new(100);
    assert!(!budget.charge(90));
    assert!(budget.charge(20)); // over: both park
    let mut first = Park::new();
    let mut second = Park::new();
    let woken = Arc::new(AtomicUsize::new(0));
    let (w1, w2) = (counting_waker(&woken, 1), counting_waker(&woken, 10));
    let mut cx1 = Context::from_waker(&w1);
    let mut cx2 = Context::from_waker(&w2);
    assert!(budget.poll_room(&mut first, 40, &mut cx1).is_pending());
    assert!(budget.poll_room(&mut second, 30, &mut cx2).is_pending());
    assert_eq!(budget.parked_len(), 2);
    // A new reservation waits while anyone is parked.
    let mut queued = budget.admit(1, Duration::from_secs(5));
    assert!(!queued.is_granted());
    // 20 bytes of room: the oldest goes first even if it claims more, the next waits.
    budget.release(30);
    assert_eq!(woken.load(Relaxed), 1);
    assert_eq!(budget.parked_len(), 1);
    assert!(budget.poll_room(&mut first, 40, &mut cx1).is_ready());
    assert!(first.is_running());
    // Room, but the second stays queued until woken: the running one has the right of way.
    budget.release(9);
    assert_eq!(
        woken.load(Relaxed),
        1,
        "29 of room < the second's claim of 30"
    );
    assert!(budget.poll_room(&mut second, 30, &mut cx2).is_pending());
    budget.release(20);
    assert_eq!(woken.load(Relaxed), 11, "49 of room covers the claim");
    assert!(budget.poll_room(&mut second, 30, &mut cx2).is_ready());
    // Admission waits until everyone woken from the park has ended.
    assert!(!queued.is_granted());
    drop(first);
    assert!(!queued.is_granted());
    drop(second);
    (&mut queued).await.unwrap();
    assert_eq!(queued.take(), 1);
    assert_eq!(budget.stats().parked, 2);
    assert_eq!(budget.inner.waiting.load(Relaxed), 0);
}

#[test]
fn a_running_request_that_grows_over_again_queues_at_its_place() {
    let budget = MemoryBudget::new(10);
    budget.charge(20);
    let (mut old, mut young) = (Park::new(), Park::new());
    let mut cx = Context::from_waker(Waker::noop());
    assert!(budget.poll_room(&mut old, 10, &mut cx).is_pending());
    assert!(budget.poll_room(&mut young, 10, &mut cx).is_pending());
    budget.release(15);
    assert!(old.is_running() && young.is_queued());
    assert!(budget.poll_room(&mut old, 10, &mut cx).is_ready());
    budget.charge(10); // over again
    assert!(budget.poll_room(&mut old, 15, &mut cx).is_pending());
    assert!(old.is_queued());
    assert_eq!(
        budget
            .inner
            .queues
            .lock()
            .unwrap()
            .parked
            .front()
            .unwrap()
            .seq,
        0
    );
    let progress = budget.progress();
    drop(young);
    assert!(
        budget.progress() > progress,
        "leaving frees room for others"
    );
    drop(old);
    assert_eq!(budget.inner.waiting.load(Relaxed), 0);
    assert_eq!(budget.parked_len(), 0);
}

#[tokio::test]
async fn growing_capacity_grants_waiters() {
    let budget = MemoryBudget::new(10);
    budget.charge(5);
    let mut waiting = budget.admit(50, Duration::from_secs(5));
    assert!(!waiting.is_granted());
    budget.set_capacity(100);
    (&mut waiting).await.unwrap();
    assert_eq!(budget.in_use(), 55);
}

#[tokio::test]
async fn movement_past_the_marks_notifies_once() {
    let budget = MemoryBudget::new(1000);
    budget.set_marks(0, 100);
    budget.charge(50);
    let moved = budget.moved();
    tokio::pin!(moved);
    assert!(futures_poll(&mut moved).is_pending());
    budget.charge(60);
    assert!(futures_poll(&mut moved).is_ready());
    // Disarmed until new marks.
    budget.charge(500);
    let again = budget.moved();
    tokio::pin!(again);
    assert!(futures_poll(&mut again).is_pending());
}

fn futures_poll<F: Future>(f: &mut Pin<&mut F>) -> Poll<F::Output> {
    f.as_mut().poll(&mut Context::from_waker(Waker::noop()))
}

fn counting_waker(count: &Arc<AtomicUsize>, by: usize) -> Waker {
    struct W(Arc<AtomicUsize>, usize);
    impl std::task::Wake for W {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(self.1, Relaxed);
        }
    }
    Waker::from(Arc::new(W(Arc::clone(count), by)))
}
