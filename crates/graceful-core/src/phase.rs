//! The futures returned by [`Shutdown`](crate::Shutdown)'s waiting methods.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::state::{Phases, DRAINED, FORCED, TRIGGERED};
use crate::sync::Arc;

/// Waits for one phase bit: checks it, then registers in the phase's
/// waker set, which reports a bit set in between (see `waker_set`).
pub(crate) struct PhaseWait {
    phases: Arc<Phases>,
    bit: u8,
    key: Option<usize>,
}

impl PhaseWait {
    pub(crate) fn new(phases: Arc<Phases>, bit: u8) -> Self {
        PhaseWait {
            phases,
            bit,
            key: None,
        }
    }

    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if self.phases.is(self.bit)
            || !self
                .phases
                .waiters(self.bit)
                .register(&mut self.key, cx.waker())
        {
            self.key = None;
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Blocks the thread until the bit is set or `deadline` passes.
    #[cfg(not(loom))]
    pub(crate) fn wait(
        phases: &Arc<Phases>,
        bit: u8,
        deadline: Option<std::time::Instant>,
    ) -> bool {
        phases.is(bit)
            || crate::block_on::run(PhaseWait::new(phases.clone(), bit), deadline).is_some()
    }
}

impl Future for PhaseWait {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.get_mut().poll_wait(cx)
    }
}

impl Drop for PhaseWait {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            if !self.phases.is(self.bit) {
                self.phases.waiters(self.bit).unregister(key);
            }
        }
    }
}

macro_rules! phase_future {
    ($(#[$m:meta])* $name:ident, $bit:expr, $label:literal) => {
        $(#[$m])*
        #[must_use = "futures do nothing unless polled"]
        pub struct $name(PhaseWait);

        impl $name {
            pub(crate) fn new(phases: Arc<Phases>) -> Self {
                $name(PhaseWait::new(phases, $bit))
            }
        }

        impl Future for $name {
            type Output = ();
            fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
                self.get_mut().0.poll_wait(cx)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field($label, &self.0.phases.is($bit))
                    .finish()
            }
        }
    };
}

phase_future!(
    /// Resolves once the shutdown is triggered. Returned by
    /// [`Shutdown::triggered`](crate::Shutdown::triggered).
    Triggered, TRIGGERED, "triggered"
);
phase_future!(
    /// Resolves once the shutdown is forced. Returned by
    /// [`Shutdown::forced`](crate::Shutdown::forced).
    Forced, FORCED, "forced"
);
phase_future!(
    /// Resolves once the shutdown is triggered and no guard is held. Returned
    /// by [`Shutdown::drained`](crate::Shutdown::drained).
    Drained, DRAINED, "drained"
);

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    /// Waits abandoned before their phase (a `select!` loop that polls a
    /// fresh `drained()` each turn) leave no waker behind.
    #[test]
    fn abandoned_waits_do_not_pile_up() {
        let phases = Arc::new(Phases::new(None));
        let mut cx = Context::from_waker(futures::task::noop_waker_ref());
        for _ in 0..10_000 {
            let mut wait = PhaseWait::new(phases.clone(), DRAINED);
            assert!(Pin::new(&mut wait).poll(&mut cx).is_pending());
            assert_eq!(phases.waiters(DRAINED).len(), 1);
        }
        assert_eq!(phases.waiters(DRAINED).len(), 0);
    }
}
