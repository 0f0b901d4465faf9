use std::future::Future;
use std::time::{Duration, Instant};

/// What the core needs from an async runtime: a timer, a way to spawn, and a
/// way to run a future to completion on the current thread.
///
/// Each adapter crate implements it (`graceful_tokio::Runtime`,
/// `graceful_smol::Runtime`, `graceful_std::Runtime`), so that waiting with a
/// deadline, the accept loop and the drain are written once in the core.
/// A test can wrap an adapter's runtime to replace its clock (the
/// conformance suite's manual clock does).
pub trait Runtime: Clone + Send + Sync + 'static {
    /// The future returned by [`sleep`](Self::sleep).
    type Sleep: Future<Output = ()> + Send + 'static;

    /// A future that resolves after `duration` on this runtime's clock.
    fn sleep(&self, duration: Duration) -> Self::Sleep;

    /// The current time on this runtime's clock. Real time by default; a
    /// manual clock in tests.
    fn now(&self) -> Instant {
        Instant::now()
    }

    /// Runs `future` in the background.
    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static;

    /// Runs `future` to completion on the current thread.
    fn block_on<F: Future>(&self, future: F) -> F::Output;
}

impl<R: Runtime> Runtime for std::sync::Arc<R> {
    type Sleep = R::Sleep;
    fn sleep(&self, duration: Duration) -> Self::Sleep {
        (**self).sleep(duration)
    }
    fn now(&self) -> Instant {
        (**self).now()
    }
    fn spawn<F>(&self, future: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        (**self).spawn(future)
    }
    fn block_on<F: Future>(&self, future: F) -> F::Output {
        (**self).block_on(future)
    }
}

/// Gives an adapter's runtime type the [`Runtime`] trait's methods as
/// inherent ones, so its users call `runtime.block_on(..)` without
/// importing the trait. With `unit: "name"`, for a runtime that is a unit
/// struct (`struct Runtime(())`), also its `new` and `Debug`. For adapter
/// authors.
#[doc(hidden)]
#[macro_export]
macro_rules! inherent_runtime_methods {
    ($ty:ident, unit: $name:literal) => {
        impl $ty {
            /// The runtime. Never fails; returns a `Result` to match the
            /// other adapters' `Runtime::new`.
            pub fn new() -> ::std::io::Result<$ty> {
                Ok($ty(()))
            }
        }

        impl ::std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(concat!("Runtime(", $name, ")"))
            }
        }

        $crate::inherent_runtime_methods!($ty);
    };
    ($ty:ty) => {
        impl $ty {
            /// Runs `future` to completion on the current thread.
            pub fn block_on<F: ::std::future::Future>(&self, future: F) -> F::Output {
                $crate::Runtime::block_on(self, future)
            }

            /// Runs `future` in the background.
            pub fn spawn<F>(&self, future: F)
            where
                F: ::std::future::Future<Output = ()> + Send + 'static,
            {
                $crate::Runtime::spawn(self, future)
            }

            /// A future that resolves after `duration`.
            pub fn sleep(
                &self,
                duration: ::std::time::Duration,
            ) -> <Self as $crate::Runtime>::Sleep {
                $crate::Runtime::sleep(self, duration)
            }
        }
    };
}
