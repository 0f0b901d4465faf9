//! A manual clock, and a runtime wrapper that takes its timers from it.
//!
//! Invariants: time moves only in [`ManualClock::advance`]; a sleep
//! registers its waker under the clock's lock, and `advance` wakes every
//! sleep whose deadline it reached after updating the time under the same
//! lock, so no sleep misses its deadline.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use event_listener::{Event, Listener};
use graceful_core::Runtime;

/// A clock that moves only when told to.
#[derive(Clone)]
pub struct ManualClock {
    inner: Arc<ClockInner>,
}

struct ClockInner {
    base: Instant,
    state: Mutex<ClockState>,
    changed: Event,
}

#[derive(Default)]
struct ClockState {
    elapsed: Duration,
    next_id: u64,
    sleepers: Vec<(u64, Duration, Waker)>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock::new()
    }
}

impl ManualClock {
    /// A clock at its start.
    pub fn new() -> ManualClock {
        ManualClock {
            inner: Arc::new(ClockInner {
                base: Instant::now(),
                state: Mutex::new(ClockState::default()),
                changed: Event::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The clock's current time.
    pub fn now(&self) -> Instant {
        self.inner.base + self.state().elapsed
    }

    /// How far the clock has moved.
    pub fn elapsed(&self) -> Duration {
        self.state().elapsed
    }

    /// A sleep of `duration` from now on this clock.
    pub fn sleep(&self, duration: Duration) -> ManualSleep {
        let mut st = self.state();
        st.next_id += 1;
        ManualSleep {
            clock: self.clone(),
            id: st.next_id,
            deadline: st.elapsed + duration,
        }
    }

    /// Moves the clock forward and wakes the sleeps that are due.
    pub fn advance(&self, by: Duration) {
        let due: Vec<Waker> = {
            let mut st = self.state();
            st.elapsed += by;
            let now = st.elapsed;
            let (due, waiting) = std::mem::take(&mut st.sleepers)
                .into_iter()
                .partition(|(_, deadline, _)| *deadline <= now);
            st.sleepers = waiting;
            due.into_iter().map(|(_, _, w)| w).collect()
        };
        for w in due {
            w.wake();
        }
        self.inner.changed.notify(usize::MAX);
    }

    /// How many sleeps are waiting on this clock.
    pub fn sleeping(&self) -> usize {
        self.state().sleepers.len()
    }

    /// Blocks (in real time, at most `timeout`) until at least `n` sleeps
    /// are waiting; returns whether they are.
    pub fn wait_for_sleeps(&self, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |st| st.sleepers.len() >= n)
    }

    /// Whether a sleep ending exactly at `at` (measured, like
    /// [`elapsed`](Self::elapsed), from the clock's start) is waiting.
    pub fn has_sleep_ending_at(&self, at: Duration) -> bool {
        Self::ends_at(&self.state(), at)
    }

    /// Blocks (in real time, at most `timeout`) until a sleep ending exactly
    /// at `at` (from the clock's start) is waiting; returns whether one is.
    /// Lets a test know that one particular timer (say the pre-drain
    /// delay's, armed at the trigger) was armed before it moves the clock,
    /// when other timers on this clock (a connection's linger, the drain's
    /// deadline) may be waiting too.
    pub fn wait_for_sleep_ending_at(&self, at: Duration, timeout: Duration) -> bool {
        self.wait_until(timeout, |st| Self::ends_at(st, at))
    }

    /// Blocks (in real time, at most `timeout`) until at least `n` sleeps
    /// ending exactly at `at` (from the clock's start) are waiting; returns
    /// whether they are. Lets a test know that each of several timers of
    /// one length armed at one moment (say the first-request graces of
    /// connections waiting when the listener closed) was armed.
    pub fn wait_for_sleeps_ending_at(&self, at: Duration, n: usize, timeout: Duration) -> bool {
        self.wait_until(timeout, |st| {
            st.sleepers.iter().filter(|(_, d, _)| *d == at).count() >= n
        })
    }

    /// Blocks (in real time, at most `timeout`) until some sleep that ends at
    /// least `remaining` from now is waiting; returns whether one is. Lets a
    /// test know that a deadline timer was armed before it moves the clock.
    pub fn wait_for_sleep(&self, remaining: Duration, timeout: Duration) -> bool {
        self.wait_until(timeout, |st| {
            st.sleepers
                .iter()
                .any(|(_, deadline, _)| *deadline >= st.elapsed + remaining)
        })
    }

    fn ends_at(st: &ClockState, at: Duration) -> bool {
        st.sleepers.iter().any(|(_, deadline, _)| *deadline == at)
    }

    /// Blocks (in real time, at most `timeout`) until `has` holds of the
    /// clock's state; returns whether it does. A sleep that registers
    /// notifies `changed` after it did, so no registration is missed.
    fn wait_until(&self, timeout: Duration, has: impl Fn(&ClockState) -> bool) -> bool {
        let until = Instant::now() + timeout;
        loop {
            if has(&self.state()) {
                return true;
            }
            let l = self.inner.changed.listen();
            if has(&self.state()) {
                return true;
            }
            if l.wait_deadline(until).is_none() {
                return has(&self.state());
            }
        }
    }
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.state();
        f.debug_struct("ManualClock")
            .field("elapsed", &st.elapsed)
            .field("sleepers", &st.sleepers.len())
            .finish()
    }
}

/// A sleep on a [`ManualClock`].
#[must_use = "futures do nothing unless polled"]
pub struct ManualSleep {
    clock: ManualClock,
    id: u64,
    deadline: Duration,
}

impl Future for ManualSleep {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.clock.state();
        if st.elapsed >= self.deadline {
            st.sleepers.retain(|(id, _, _)| *id != self.id);
            return Poll::Ready(());
        }
        match st.sleepers.iter_mut().find(|(id, _, _)| *id == self.id) {
            Some(entry) => entry.2 = cx.waker().clone(),
            None => {
                st.sleepers
                    .push((self.id, self.deadline, cx.waker().clone()));
                drop(st);
                self.clock.inner.changed.notify(usize::MAX);
            }
        }
        Poll::Pending
    }
}

impl Drop for ManualSleep {
    fn drop(&mut self) {
        self.clock
            .state()
            .sleepers
            .retain(|(id, _, _)| *id != self.id);
    }
}

impl fmt::Debug for ManualSleep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualSleep")
            .field("deadline", &self.deadline)
            .finish()
    }
}

/// An adapter's runtime whose timers come from a [`ManualClock`] when one is
/// given; tasks and `block_on` stay the adapter's.
#[derive(Clone, Debug)]
pub struct TestRuntime<R> {
    rt: R,
    clock: Option<ManualClock>,
}

impl<R: Runtime> TestRuntime<R> {
    /// `rt` with its own clock (`None`) or a manual one.
    pub fn new(rt: R, clock: Option<ManualClock>) -> Self {
        TestRuntime { rt, clock }
    }

    /// The adapter's runtime inside.
    pub fn inner(&self) -> &R {
        &self.rt
    }

    /// The manual clock, if there is one.
    pub fn clock(&self) -> Option<&ManualClock> {
        self.clock.as_ref()
    }
}

/// The sleep of a [`TestRuntime`].
#[must_use = "futures do nothing unless polled"]
pub enum TestSleep<S> {
    /// The adapter's own timer.
    Real(Pin<Box<S>>),
    /// The manual clock's.
    Manual(ManualSleep),
}

impl<S: Future<Output = ()>> Future for TestSleep<S> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.get_mut() {
            TestSleep::Real(s) => s.as_mut().poll(cx),
            TestSleep::Manual(s) => Pin::new(s).poll(cx),
        }
    }
}

impl<S> fmt::Debug for TestSleep<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestSleep::Real(_) => f.write_str("TestSleep::Real"),
            TestSleep::Manual(s) => s.fmt(f),
        }
    }
}

impl<R: Runtime> Runtime for TestRuntime<R> {
    type Sleep = TestSleep<R::Sleep>;

    fn sleep(&self, duration: Duration) -> Self::Sleep {
        match &self.clock {
            Some(c) => TestSleep::Manual(c.sleep(duration)),
            None => TestSleep::Real(Box::pin(self.rt.sleep(duration))),
        }
    }

    fn now(&self) -> Instant {
        match &self.clock {
            Some(c) => c.now(),
            None => self.rt.now(),
        }
    }

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.rt.spawn(future)
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.rt.block_on(future)
    }
}
