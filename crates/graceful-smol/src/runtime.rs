use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// smol as the core's [`graceful_core::Runtime`]: tasks on an executor run
/// by one thread per core (`SMOL_THREADS` overrides the count), timers from
/// `async-io`, `block_on` driving the reactor on the calling thread.
///
/// smol's own global executor runs on one thread unless `SMOL_THREADS` is
/// set: a server closing thousands of connections at its stop would wind
/// them down on one core.
#[derive(Clone, Default)]
pub struct Runtime(());

/// A sleep on `async-io`'s timer.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct Sleep(async_io::Timer);

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl graceful_core::Runtime for Runtime {
    type Sleep = Sleep;

    fn sleep(&self, duration: Duration) -> Sleep {
        Sleep(async_io::Timer::after(duration))
    }

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        executor().spawn(future).detach();
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        smol::block_on(future)
    }
}

/// The executor of every [`Runtime`], started on first use with its
/// threads, which live as long as the process (as smol's global one).
fn executor() -> &'static smol::Executor<'static> {
    static EXECUTOR: smol::Executor<'static> = smol::Executor::new();
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let threads = std::env::var("SMOL_THREADS")
            .ok()
            .and_then(|s| s.parse().ok())
            .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
            .unwrap_or(1)
            .max(1);
        for n in 1..=threads {
            std::thread::Builder::new()
                .name(format!("graceful-smol-{n}"))
                .spawn(|| loop {
                    // A task that panics is isolated by the server (it
                    // catches its handlers' panics); anything else that
                    // unwinds out of `run` must not take the thread along.
                    let run = || smol::block_on(EXECUTOR.run(std::future::pending::<()>()));
                    let _ = std::panic::catch_unwind(run);
                })
                .expect("cannot start an executor thread");
        }
    });
    &EXECUTOR
}
graceful_core::inherent_runtime_methods!(Runtime, unit: "smol");
