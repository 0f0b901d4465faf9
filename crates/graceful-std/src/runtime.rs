use std::future::Future;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::Duration;

/// Plain threads as the core's [`graceful_core::Runtime`]: `spawn` runs
/// the future on a thread of its own (reused once the future ends) while
/// it is busy; `block_on` parks the calling thread between wake-ups, or
/// waits in `poll(2)` for the sockets the future waits for (the HTTP
/// server's); timers come from `futures-timer`'s timer thread, which a
/// server starts before it serves. No async runtime.
///
/// On Linux a spawned future that has waited 10 ms with nothing to do (an
/// idle keep-alive connection) gives its thread back: one parking thread
/// waits for every such future's sockets and timers in one `epoll` set, and
/// runs it on a thread again when one is ready or it is woken. An idle
/// connection then costs its socket and its state, not a thread. While 64
/// futures wait on their threads, one more gives its thread back as soon
/// as it waits: a burst of connections does not hold a thread each. A future
/// that blocks its thread (a blocking handler) keeps it while it blocks:
/// only a future that returned `Pending` can be parked.
#[derive(Clone, Default)]
pub struct Runtime(());

impl graceful_core::Runtime for Runtime {
    type Sleep = futures_timer::Delay;

    fn sleep(&self, duration: Duration) -> Self::Sleep {
        futures_timer::Delay::new(duration)
    }

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // Polled where it is allocated: a future moved by value onto a
        // thread would be copied onto its stack, and a thread's stack
        // pages stay resident after its connection ends.
        crate::park::Task::spawn(Box::pin(future));
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        crate::reactor::block_on(future)
    }
}
graceful_core::inherent_runtime_methods!(Runtime, unit: "threads");

/// Starts `futures-timer`'s thread now, where a failure is an error, rather
/// than with the first timer, which for a server is often made at the stop
/// (its deadline, a first-request grace): then the process may be at its
/// thread limit (a stop wakes thousands of parked connections), and a timer
/// made while no thread can start panics when polled. Once started, the
/// thread serves every timer for the process's life.
pub(crate) fn start_timer_thread() -> io::Result<()> {
    let waker = Waker::from(Arc::new(Noop));
    let mut probe = futures_timer::Delay::new(Duration::from_secs(3600));
    // A timer made with no thread has nothing behind it: its poll panics.
    let polled = catch_unwind(AssertUnwindSafe(|| {
        let _ = Pin::new(&mut probe).poll(&mut Context::from_waker(&waker));
    }));
    polled.map_err(|_| io::Error::other("cannot start the timer thread"))
}

/// A waker that does nothing (each one distinct: `will_wake` tells them
/// apart).
pub(crate) struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}
