//! Synchronisation primitives, switched to loom's under `cfg(loom)`.
//!
//! Invariants the rest of the crate relies on:
//! - `Counted<T>` is a reference count whose last release drops `T` exactly
//!   once; `Counted::clone` is one atomic increment and `Drop` one decrement,
//!   with no allocation. Under `cfg(not(loom))` it *is* `std::sync::Arc`.
//! - `WeakCounted<T>::upgrade` fails once the strong count reached zero and
//!   never resurrects the value.
//! - `ChildRef` points at a child shutdown without keeping it alive (a
//!   strong reference under loom, which has no `Weak`; the model tests never
//!   rely on a child being freed).

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
#[cfg(not(loom))]
pub(crate) use std::sync::{Arc, Mutex, MutexGuard};

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
#[cfg(loom)]
pub(crate) use loom::sync::{Arc, Mutex, MutexGuard};

/// Locks a mutex, ignoring poisoning: every critical section in this crate
/// leaves the data consistent before anything that can panic runs.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

#[cfg(not(loom))]
mod counted {
    /// A strong count: `std::sync::Arc`.
    #[derive(Debug)]
    pub(crate) struct Counted<T>(std::sync::Arc<T>);
    /// A weak count: `std::sync::Weak`.
    #[derive(Debug)]
    pub(crate) struct WeakCounted<T>(std::sync::Weak<T>);

    impl<T> Counted<T> {
        pub(crate) fn new(value: T) -> Self {
            Counted(std::sync::Arc::new(value))
        }
        pub(crate) fn downgrade(this: &Self) -> WeakCounted<T> {
            WeakCounted(std::sync::Arc::downgrade(&this.0))
        }

        /// Releases this reference; returns the value if it was the last.
        pub(crate) fn into_inner(this: Self) -> Option<T> {
            std::sync::Arc::into_inner(this.0)
        }
    }
    impl<T> Clone for Counted<T> {
        #[inline]
        fn clone(&self) -> Self {
            Counted(self.0.clone())
        }
    }
    impl<T> WeakCounted<T> {
        #[inline]
        pub(crate) fn upgrade(&self) -> Option<Counted<T>> {
            self.0.upgrade().map(Counted)
        }
        pub(crate) fn strong_count(&self) -> usize {
            self.0.strong_count()
        }
    }
    impl<T> Clone for WeakCounted<T> {
        fn clone(&self) -> Self {
            WeakCounted(self.0.clone())
        }
    }
}

#[cfg(loom)]
mod counted {
    use super::{lock, Arc, AtomicUsize, Mutex, Ordering};

    struct Shared<T> {
        strong: AtomicUsize,
        value: Mutex<Option<T>>,
    }

    /// A loom model of `std::sync::Arc`'s strong count (`None` only once
    /// released by `into_inner`).
    pub(crate) struct Counted<T>(Option<Arc<Shared<T>>>);
    /// A loom model of `std::sync::Weak`.
    pub(crate) struct WeakCounted<T>(Arc<Shared<T>>);

    impl<T> std::fmt::Debug for Counted<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("Counted")
        }
    }
    impl<T> std::fmt::Debug for WeakCounted<T> {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("WeakCounted")
        }
    }

    impl<T> Counted<T> {
        pub(crate) fn new(value: T) -> Self {
            Counted(Some(Arc::new(Shared {
                strong: AtomicUsize::new(1),
                value: Mutex::new(Some(value)),
            })))
        }
        fn shared(&self) -> &Arc<Shared<T>> {
            self.0.as_ref().expect("released")
        }
        pub(crate) fn downgrade(this: &Self) -> WeakCounted<T> {
            WeakCounted(this.shared().clone())
        }
        pub(crate) fn into_inner(mut this: Self) -> Option<T> {
            let shared = this.0.take().expect("released");
            if shared.strong.fetch_sub(1, Ordering::AcqRel) == 1 {
                lock(&shared.value).take()
            } else {
                None
            }
        }
    }
    impl<T> Clone for Counted<T> {
        fn clone(&self) -> Self {
            self.shared().strong.fetch_add(1, Ordering::Relaxed);
            Counted(Some(self.shared().clone()))
        }
    }
    impl<T> Drop for Counted<T> {
        fn drop(&mut self) {
            if let Some(shared) = self.0.take() {
                if shared.strong.fetch_sub(1, Ordering::AcqRel) == 1 {
                    let value = lock(&shared.value).take();
                    drop(value);
                }
            }
        }
    }
    impl<T> WeakCounted<T> {
        pub(crate) fn upgrade(&self) -> Option<Counted<T>> {
            let mut n = self.0.strong.load(Ordering::Relaxed);
            loop {
                if n == 0 {
                    return None;
                }
                match self.0.strong.compare_exchange_weak(
                    n,
                    n + 1,
                    Ordering::Acquire,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => return Some(Counted(Some(self.0.clone()))),
                    Err(actual) => n = actual,
                }
            }
        }
        pub(crate) fn strong_count(&self) -> usize {
            self.0.strong.load(Ordering::Acquire)
        }
    }
    impl<T> Clone for WeakCounted<T> {
        fn clone(&self) -> Self {
            WeakCounted(self.0.clone())
        }
    }
}

pub(crate) use counted::{Counted, WeakCounted};

#[cfg(not(loom))]
pub(crate) type ChildRef<T> = std::sync::Weak<T>;
#[cfg(loom)]
pub(crate) type ChildRef<T> = Arc<T>;

#[cfg(not(loom))]
pub(crate) fn child_ref<T>(a: &Arc<T>) -> ChildRef<T> {
    Arc::downgrade(a)
}
#[cfg(loom)]
pub(crate) fn child_ref<T>(a: &Arc<T>) -> ChildRef<T> {
    a.clone()
}

#[cfg(not(loom))]
pub(crate) fn upgrade_child<T>(c: &ChildRef<T>) -> Option<Arc<T>> {
    c.upgrade()
}
#[cfg(loom)]
pub(crate) fn upgrade_child<T>(c: &ChildRef<T>) -> Option<Arc<T>> {
    Some(c.clone())
}
