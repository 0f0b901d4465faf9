use std::fmt;
use std::panic::Location;

use crate::state::{Inner, Token};
use crate::sync::{lock, Arc, Counted};

/// A unit of in-flight work. The shutdown is not drained while a guard lives.
///
/// Dropping the guard releases it, also when the thread unwinds from a panic.
/// Taking one upgrades a weak reference (a compare-and-swap loop on the
/// strong count), dropping it is one atomic decrement, with no heap
/// allocation; a guard is one pointer wide.
///
/// A guard taken after the shutdown was already drained is *detached*: it
/// counts nothing, since a drained shutdown stays drained. Use
/// [`Shutdown::try_guard`](crate::Shutdown::try_guard) to refuse work instead.
#[must_use = "the work is only tracked while the guard is held"]
pub struct Guard {
    token: Option<Counted<Token>>,
}

impl Guard {
    #[inline]
    pub(crate) fn new(token: Option<Counted<Token>>) -> Guard {
        Guard { token }
    }

    /// The reference this guard holds, released by the caller.
    pub(crate) fn into_token(self) -> Option<Counted<Token>> {
        self.token
    }

    /// Whether this guard counts towards its shutdown (false when it was taken
    /// after the shutdown had drained).
    pub fn is_attached(&self) -> bool {
        self.token.is_some()
    }
}

impl Clone for Guard {
    /// Another guard for the same shutdown (one more unit of work).
    #[inline]
    fn clone(&self) -> Self {
        Guard {
            token: self.token.clone(),
        }
    }
}

impl fmt::Debug for Guard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Guard")
            .field("attached", &self.is_attached())
            .finish()
    }
}

/// A guard that is listed by name, location and age in the
/// [`Report`](crate::Report) of what is still running.
///
/// Costs a short lock and a registry slot; use it for connections and jobs
/// that an operator would want to see named when a deadline passes.
#[must_use = "the work is only tracked while the guard is held"]
pub struct NamedGuard {
    inner: Arc<Inner>,
    slot: usize,
    // Dropped after the registry entry is removed (see `Drop`), so a drained
    // shutdown never lists a released guard.
    guard: Guard,
}

impl NamedGuard {
    pub(crate) fn new(inner: Arc<Inner>, slot: usize, guard: Guard) -> NamedGuard {
        NamedGuard { inner, slot, guard }
    }

    /// The plain guard inside (cloning it takes another, unnamed guard).
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// Where this guard was taken.
    pub fn location(&self) -> &'static Location<'static> {
        lock(&self.inner.registry)
            .get(self.slot)
            .map(|e| e.location)
            .unwrap_or_else(Location::caller)
    }
}

impl Drop for NamedGuard {
    fn drop(&mut self) {
        lock(&self.inner.registry).remove(self.slot);
    }
}

impl fmt::Debug for NamedGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reg = lock(&self.inner.registry);
        let name = reg.get(self.slot).map(|e| e.name.clone());
        f.debug_struct("NamedGuard")
            .field("name", &name)
            .field("attached", &self.guard.is_attached())
            .finish()
    }
}
