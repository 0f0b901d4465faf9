use std::future::Future;

use graceful_core::Runtime;

/// hyper's executor (for HTTP/2 streams) over any core [`Runtime`].
#[derive(Clone, Debug)]
pub(crate) struct Exec<R>(pub(crate) R);

impl<R, F> hyper::rt::Executor<F> for Exec<R>
where
    R: Runtime,
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.spawn(async move {
            future.await;
        });
    }
}
