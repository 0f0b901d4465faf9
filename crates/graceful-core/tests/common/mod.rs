//! A minimal real-time runtime for the core's own tests: threads for spawn
//! and timers, the core's `block_on`.
#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    missing_debug_implementations
)]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use graceful_core::Runtime;

#[derive(Clone, Debug, Default)]
pub struct ThreadRuntime;

pub struct Sleep {
    until: Instant,
    state: Arc<Mutex<(bool, Option<Waker>)>>,
    started: bool,
}

impl Future for Sleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut st = self.state.lock().unwrap();
        if st.0 || Instant::now() >= self.until {
            return Poll::Ready(());
        }
        st.1 = Some(cx.waker().clone());
        drop(st);
        if !self.started {
            self.started = true;
            let state = self.state.clone();
            let until = self.until;
            std::thread::spawn(move || {
                std::thread::sleep(until.saturating_duration_since(Instant::now()));
                let mut st = state.lock().unwrap();
                st.0 = true;
                if let Some(w) = st.1.take() {
                    w.wake();
                }
            });
        }
        Poll::Pending
    }
}

impl Runtime for ThreadRuntime {
    type Sleep = Sleep;
    fn sleep(&self, d: Duration) -> Sleep {
        Sleep {
            until: Instant::now() + d,
            state: Arc::new(Mutex::new((false, None))),
            started: false,
        }
    }
    fn spawn<F>(&self, f: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        std::thread::spawn(move || graceful_core::block_on(f));
    }
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        graceful_core::block_on(f)
    }
}

/// Bounds a test: panics if `f` takes longer than `secs`.
pub fn within<T: Send + 'static>(secs: u64, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .expect("the test did not finish in time")
}
