//! Every public type is Send/Sync/Unpin as intended.

use graceful_core::futures::{Deadline, Drained, EnforceDeadline, Forced, Triggered};
use graceful_core::server::ConnTrack;
use graceful_core::*;

fn send_sync_unpin<T: Send + Sync + Unpin>() {}
fn send_unpin<T: Send + Unpin>() {}

struct NoRt;

#[test]
fn public_types_are_send_sync_unpin() {
    send_sync_unpin::<Shutdown>();
    send_sync_unpin::<Guard>();
    send_sync_unpin::<NamedGuard>();
    send_sync_unpin::<Reason>();
    send_sync_unpin::<Signal>();
    send_sync_unpin::<ForceCause>();
    send_sync_unpin::<Report>();
    send_sync_unpin::<GuardInfo>();
    send_sync_unpin::<Outcome>();
    send_sync_unpin::<Elapsed>();
    send_sync_unpin::<SignalConfig>();
    send_sync_unpin::<Escalation>();
    send_sync_unpin::<SignalAction>();
    send_sync_unpin::<ServeConfig>();
    send_sync_unpin::<Conn>();
    send_sync_unpin::<ConnTrack>();
    send_sync_unpin::<Triggered>();
    send_sync_unpin::<Forced>();
    send_sync_unpin::<Drained>();
    send_sync_unpin::<Deadline<Triggered, Forced>>();
    // A drain owns a boxed `dyn Future + Send`: Send and Unpin, not Sync.
    fn drain_of<R: Runtime>() {
        send_unpin::<EnforceDeadline<R>>();
    }
    let _ = drain_of::<std::sync::Arc<DummyRt>>;
    let _ = NoRt;
}

#[derive(Clone)]
struct DummyRt;
impl Runtime for DummyRt {
    type Sleep = std::future::Pending<()>;
    fn sleep(&self, _: std::time::Duration) -> Self::Sleep {
        std::future::pending()
    }
    fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, _: F) {}
    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        graceful_core::block_on(f)
    }
}
