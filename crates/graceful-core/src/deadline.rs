use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
#[cfg(not(loom))]
use std::time::Instant;

use pin_project_lite::pin_project;

/// The error of a [`Deadline`] whose timer fired first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed(());

impl Elapsed {
    pub(crate) fn new() -> Elapsed {
        Elapsed(())
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("deadline elapsed")
    }
}

impl std::error::Error for Elapsed {}

pin_project! {
    /// A future with a deadline: resolves to `Ok(output)` if `future`
    /// finishes first, `Err(Elapsed)` if `timer` does. Returned by
    /// [`deadline`].
    ///
    /// The timer is any future, so the core never names a runtime: pass
    /// `tokio::time::sleep(d)`, `async_io::Timer::after(d)` or
    /// [`Runtime::sleep`](crate::Runtime::sleep).
    #[must_use = "futures do nothing unless polled"]
    pub struct Deadline<F, T> {
        #[pin]
        future: F,
        #[pin]
        timer: T,
    }
}

/// Runs `future` until `timer` resolves; see [`Deadline`].
///
/// ```
/// use std::future::{pending, ready};
/// use graceful_core::deadline;
///
/// futures::executor::block_on(async {
///     assert_eq!(deadline(ready(7), pending::<()>()).await, Ok(7));
///     assert!(deadline(pending::<i32>(), ready(())).await.is_err());
/// });
/// ```
pub fn deadline<F, T>(future: F, timer: T) -> Deadline<F, T>
where
    F: Future,
    T: Future<Output = ()>,
{
    Deadline { future, timer }
}

impl<F: Future, T: Future<Output = ()>> Future for Deadline<F, T> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(out) = this.future.poll(cx) {
            return Poll::Ready(Ok(out));
        }
        match this.timer.poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(Elapsed::new())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<F, T> fmt::Debug for Deadline<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Deadline").finish_non_exhaustive()
    }
}

/// The blocking twin of [`deadline`]: runs `future` on this thread until it
/// finishes or `until` passes, with no runtime.
///
/// The future must not need a runtime's reactor to make progress (a
/// [`Shutdown`](crate::Shutdown) phase, a channel, an event do not).
///
/// ```
/// use std::time::{Duration, Instant};
/// use graceful_core::{block_on_until, Reason, Shutdown};
///
/// let shutdown = Shutdown::new();
/// let soon = Instant::now() + Duration::from_millis(10);
/// assert!(block_on_until(shutdown.triggered(), soon).is_err());
/// shutdown.trigger(Reason::requested());
/// assert!(block_on_until(shutdown.triggered(), soon).is_ok());
/// ```
#[cfg(not(loom))]
pub fn block_on_until<F: Future>(future: F, until: Instant) -> Result<F::Output, Elapsed> {
    crate::block_on::run(future, Some(until)).ok_or_else(Elapsed::new)
}
