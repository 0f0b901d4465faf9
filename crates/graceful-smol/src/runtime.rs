use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// smol as the core's [`graceful_core::Runtime`]: tasks on smol's global
/// executor, timers from `async-io`, `block_on` driving the reactor on the
/// calling thread.
#[derive(Clone, Default)]
pub struct Runtime(());

impl Runtime {
    /// The smol runtime. Never fails; returns a `Result` to match the other
    /// adapters' `Runtime::new`.
    pub fn new() -> io::Result<Runtime> {
        Ok(Runtime(()))
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Runtime(smol)")
    }
}

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
        smol::spawn(future).detach();
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        smol::block_on(future)
    }
}
