use std::future::Future;
use std::time::Duration;

/// Plain threads as the core's [`graceful_core::Runtime`]: `spawn` runs
/// the future on a thread of its own (reused once the future ends);
/// `block_on` parks the calling thread between wake-ups, or waits in
/// `poll(2)` for the sockets the future waits for (the HTTP server's); timers
/// come from `futures-timer`'s timer thread. No async runtime, no reactor
/// thread.
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
        // Polled where it is allocated: a future moved by value into the
        // thread's `block_on` would be copied onto its stack, and a
        // thread's stack pages stay resident after its connection ends
        // (8 KiB more per idle HTTP connection).
        let future = Box::pin(future);
        if let Err(e) = crate::threads::run(move || crate::reactor::block_on(future)) {
            tracing::error!("no thread for a spawned task: {e}");
        }
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        crate::reactor::block_on(future)
    }
}
graceful_core::inherent_runtime_methods!(Runtime, unit: "threads");
