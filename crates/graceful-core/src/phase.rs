//! The futures returned by [`Shutdown`](crate::Shutdown)'s waiting methods.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use event_listener::EventListener;
#[cfg(not(loom))]
use event_listener::Listener;

use crate::state::{Phases, DRAINED, FORCED, TRIGGERED};
use crate::sync::Arc;

/// Waits for one phase bit; checks the bit again after subscribing.
pub(crate) struct PhaseWait {
    phases: Arc<Phases>,
    bit: u8,
    listener: Option<EventListener>,
}

impl PhaseWait {
    pub(crate) fn new(phases: Arc<Phases>, bit: u8) -> Self {
        PhaseWait {
            phases,
            bit,
            listener: None,
        }
    }

    fn poll_wait(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.phases.is(self.bit) {
                self.listener = None;
                return Poll::Ready(());
            }
            match self.listener.as_mut() {
                None => self.listener = Some(self.phases.event(self.bit).listen()),
                Some(l) => {
                    if Pin::new(l).poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    self.listener = None;
                }
            }
        }
    }

    /// Blocks the thread until the bit is set or `deadline` passes.
    #[cfg(not(loom))]
    pub(crate) fn wait(phases: &Phases, bit: u8, deadline: Option<std::time::Instant>) -> bool {
        loop {
            if phases.is(bit) {
                return true;
            }
            let l = phases.event(bit).listen();
            if phases.is(bit) {
                return true;
            }
            match deadline {
                None => l.wait(),
                Some(d) => {
                    if l.wait_deadline(d).is_none() {
                        return phases.is(bit);
                    }
                }
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
