//! The waiters of one phase: a broadcast-only, one-shot set of wakers.
//!
//! Invariants:
//! 1. `closed` goes from false to true once, in [`WakerSet::wake_all`],
//!    under the lock; the wakers are taken out in the same critical
//!    section and woken after it, so woken tasks never contend for this
//!    lock with the waking thread.
//! 2. The owner sets its phase bit *before* calling `wake_all`, and a
//!    waiter checks the bit *before* registering. A waiter that registers
//!    after the bit was set finds the set either still open (then
//!    `wake_all` has not taken the wakers yet and will wake it) or closed
//!    (then `register` says so and the waiter completes at once): no
//!    wake-up is lost.
//! 3. A waiter that completes after the bit was set need not unregister:
//!    the set is (or will be) closed and emptied anyway; at worst its task
//!    gets one spurious wake. A waiter dropped before the bit was set
//!    unregisters, so abandoned waits (in `select!` loops) do not pile up.

use std::task::Waker;

use crate::slab::Slab;
use crate::sync::{lock, Mutex};

#[derive(Default)]
struct Slots {
    wakers: Slab<Waker>,
    closed: bool,
}

#[derive(Default)]
pub(crate) struct WakerSet {
    slots: Mutex<Slots>,
}

impl WakerSet {
    /// Registers `waker` (in `key`'s slot, or a new one written to `key`).
    /// Returns false if the set was already woken: the caller's condition
    /// holds and it must not wait.
    pub(crate) fn register(&self, key: &mut Option<usize>, waker: &Waker) -> bool {
        let mut slots = lock(&self.slots);
        if slots.closed {
            return false;
        }
        match key.and_then(|k| slots.wakers.get_mut(k)) {
            Some(current) => {
                if !current.will_wake(waker) {
                    current.clone_from(waker);
                }
            }
            None => *key = Some(slots.wakers.insert(waker.clone())),
        }
        true
    }

    /// Removes the waker in slot `key`, if the set was not woken yet.
    pub(crate) fn unregister(&self, key: usize) {
        let mut slots = lock(&self.slots);
        if !slots.closed {
            slots.wakers.remove(key);
        }
    }

    /// How many wakers are registered.
    #[cfg(all(test, not(loom)))]
    pub(crate) fn len(&self) -> usize {
        lock(&self.slots).wakers.len()
    }

    /// Closes the set and wakes every registered waker, outside the lock.
    pub(crate) fn wake_all(&self) {
        let wakers = {
            let mut slots = lock(&self.slots);
            slots.closed = true;
            std::mem::take(&mut slots.wakers)
        };
        // A waker is foreign code: one that panics must not cost the
        // others their wake-up.
        for waker in wakers.into_values() {
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| waker.wake())).is_err() {
                tracing::error!("a waker panicked while waking; the other waiters still wake");
            }
        }
    }
}
