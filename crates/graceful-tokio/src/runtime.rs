use std::fmt;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::runtime::Handle;

/// The tokio runtime, as the core's [`graceful_core::Runtime`].
///
/// Either owns a multi-threaded runtime ([`Runtime::new`]) or borrows the
/// current one ([`Runtime::current`]).
#[derive(Clone)]
pub struct Runtime {
    handle: Handle,
    _owned: Option<Arc<Owned>>,
}

/// An owned tokio runtime, shut down without blocking when the last handle
/// goes (which may happen on one of its own threads).
struct Owned(Option<tokio::runtime::Runtime>);

impl Drop for Owned {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Runtime {
    /// A new multi-threaded tokio runtime with I/O and timers enabled.
    pub fn new() -> io::Result<Runtime> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        Ok(Runtime {
            handle: rt.handle().clone(),
            _owned: Some(Arc::new(Owned(Some(rt)))),
        })
    }

    /// The runtime this is called from.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime.
    pub fn current() -> Runtime {
        Runtime::from_handle(Handle::current())
    }

    /// The runtime `handle` belongs to.
    pub fn from_handle(handle: Handle) -> Runtime {
        Runtime {
            handle,
            _owned: None,
        }
    }

    /// The tokio handle.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl graceful_core::Runtime for Runtime {
    type Sleep = tokio::time::Sleep;

    fn sleep(&self, duration: Duration) -> Self::Sleep {
        let _context = self.handle.enter();
        tokio::time::sleep(duration)
    }

    /// tokio's clock, which its sleeps follow: with tokio's time paused
    /// (`tokio::time::pause`, in tests), a drain's deadline and an HTTP
    /// close's linger, timed on sleeps, are read on the same clock.
    fn now(&self) -> std::time::Instant {
        let _context = self.handle.enter();
        tokio::time::Instant::now().into_std()
    }

    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.handle.spawn(future));
    }

    /// Runs `future` on this runtime. Must not be called from inside an
    /// async context.
    fn block_on<F: Future>(&self, future: F) -> F::Output {
        match &self._owned {
            Some(owned) => match &owned.0 {
                Some(rt) => rt.block_on(future),
                None => self.handle.block_on(future),
            },
            None => self.handle.block_on(future),
        }
    }
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime")
            .field("owned", &self._owned.is_some())
            .finish()
    }
}
graceful_core::inherent_runtime_methods!(Runtime);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use graceful_core::Runtime as _;

    /// With tokio's time paused, `now` moves with the sleeps, not with
    /// real time.
    #[test]
    fn now_follows_tokios_clock() {
        let paused = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let rt = super::Runtime::from_handle(paused.handle().clone());
        let before = rt.now();
        paused.block_on(rt.sleep(Duration::from_secs(3600)));
        let moved = rt.now() - before;
        assert!(moved >= Duration::from_secs(3600), "{moved:?}");
        assert!(moved < Duration::from_secs(3700), "{moved:?}");
    }
}
