//! What the crate's unit tests share.

use std::future::Future;
use std::time::Duration;

/// A runtime whose timers never fire and that runs nothing: for driving a
/// connection by hand, where no grace or linger is meant to end.
#[derive(Clone)]
pub(crate) struct NoTimers;

impl graceful_core::Runtime for NoTimers {
    type Sleep = std::future::Pending<()>;
    fn sleep(&self, _: Duration) -> Self::Sleep {
        std::future::pending()
    }
    fn spawn<F: Future<Output = ()> + Send + 'static>(&self, _: F) {
        unreachable!("an HTTP/1 connection spawns nothing")
    }
    fn block_on<F: Future>(&self, _: F) -> F::Output {
        unreachable!("not used")
    }
}
