//! A scripted signal source: the test decides which signals arrive, and
//! when.

use futures::channel::mpsc;
use futures::Stream;
use graceful_core::Signal;

/// The sending side of a scripted signal source.
#[derive(Clone, Debug)]
pub struct SignalScript {
    tx: mpsc::UnboundedSender<Signal>,
}

impl SignalScript {
    /// Delivers `signal` to the source.
    pub fn send(&self, signal: Signal) {
        self.tx
            .unbounded_send(signal)
            .expect("the signal source was dropped");
    }
}

/// A signal source fed by the returned [`SignalScript`]. Signals sent
/// before anything reads the source are kept, in order.
pub fn scripted() -> (
    SignalScript,
    impl Stream<Item = Signal> + Send + Unpin + 'static,
) {
    let (tx, rx) = mpsc::unbounded();
    (SignalScript { tx }, rx)
}
