//! Scenarios 1–3: taking and dropping an unnamed guard.

use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Instant;

use event_listener::Event;

use crate::alloc;
use crate::stats::{Kind, Row, Table};
use crate::Mode;

/// Something that hands out guards; each implementation is one of these.
pub(crate) enum Guards {
    ArcFloor(Arc<()>),
    CounterEventFloor(Arc<CounterEvent>),
    Graceful(graceful_core::Shutdown),
    TokioUtil(tokio_util::task::TaskTracker),
    TokioGraceful(tokio_graceful::Shutdown),
    AsyncShutdown(async_shutdown::ShutdownManager<()>),
}

/// The least a drain group must do: a counter, and an event for its end.
pub(crate) struct CounterEvent {
    pub(crate) count: AtomicUsize,
    pub(crate) zero: Event,
}

/// A held guard of any implementation.
/// (Each variant holds its guard only to drop it later: the fields are never read.)
pub(crate) enum Held {
    Arc(#[allow(dead_code)] Arc<()>),
    Counter(#[allow(dead_code)] CounterGuard),
    Graceful(#[allow(dead_code)] graceful_core::Guard),
    TokioUtil(#[allow(dead_code)] tokio_util::task::task_tracker::TaskTrackerToken),
    TokioGraceful(#[allow(dead_code)] tokio_graceful::ShutdownGuard),
    AsyncShutdown(#[allow(dead_code)] async_shutdown::DelayShutdownToken<()>),
}

pub(crate) struct CounterGuard(Arc<CounterEvent>);

impl Drop for CounterGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.zero.notify(usize::MAX);
        }
    }
}

pub(crate) const IMPLS: [(&str, Kind); 6] = [
    ("Arc clone + drop", Kind::Floor),
    ("Arc<AtomicUsize> + Event", Kind::Floor),
    ("graceful-core Guard", Kind::Ours),
    ("tokio-util TaskTracker token", Kind::Peer),
    ("tokio-graceful ShutdownGuard", Kind::Peer),
    ("async-shutdown DelayShutdownToken", Kind::Peer),
];

impl Guards {
    /// Implementation `i` of [`IMPLS`]. tokio-graceful needs a tokio
    /// context to be built.
    pub(crate) fn new(i: usize, tokio: &tokio::runtime::Runtime) -> Guards {
        match i {
            0 => Guards::ArcFloor(Arc::new(())),
            1 => Guards::CounterEventFloor(Arc::new(CounterEvent {
                count: AtomicUsize::new(1),
                zero: Event::new(),
            })),
            2 => Guards::Graceful(graceful_core::Shutdown::new()),
            3 => Guards::TokioUtil(tokio_util::task::TaskTracker::new()),
            4 => {
                let _enter = tokio.enter();
                Guards::TokioGraceful(tokio_graceful::Shutdown::new(std::future::pending::<()>()))
            }
            _ => Guards::AsyncShutdown(async_shutdown::ShutdownManager::new()),
        }
    }

    #[inline(always)]
    pub(crate) fn take(&self) -> Held {
        match self {
            Guards::ArcFloor(a) => Held::Arc(a.clone()),
            Guards::CounterEventFloor(c) => {
                c.count.fetch_add(1, Ordering::Relaxed);
                Held::Counter(CounterGuard(c.clone()))
            }
            Guards::Graceful(s) => Held::Graceful(s.guard()),
            Guards::TokioUtil(t) => Held::TokioUtil(t.token()),
            Guards::TokioGraceful(s) => Held::TokioGraceful(s.guard()),
            Guards::AsyncShutdown(m) => Held::AsyncShutdown(m.delay_shutdown_token().unwrap()),
        }
    }
}

/// Takes and drops `n` guards in a loop; ns per take+drop. The enum match
/// is hoisted out of the loop so each implementation runs its own loop.
fn take_drop_loop(g: &Guards, n: usize) -> f64 {
    macro_rules! timed {
        ($take:expr) => {{
            let t0 = Instant::now();
            for _ in 0..n {
                drop(black_box($take));
            }
            t0.elapsed().as_nanos() as f64 / n as f64
        }};
    }
    match g {
        Guards::ArcFloor(a) => timed!(a.clone()),
        Guards::CounterEventFloor(c) => timed!({
            c.count.fetch_add(1, Ordering::Relaxed);
            CounterGuard(c.clone())
        }),
        Guards::Graceful(s) => timed!(s.guard()),
        Guards::TokioUtil(t) => timed!(t.token()),
        Guards::TokioGraceful(s) => timed!(s.guard()),
        Guards::AsyncShutdown(m) => timed!(m.delay_shutdown_token().unwrap()),
    }
}

/// Scenario 1: take + drop, one thread.
pub(crate) fn single_thread(mode: Mode, tokio: &tokio::runtime::Runtime) -> Table {
    let n = mode.pick(2_000_000, 10_000_000);
    let mut rows: Vec<Row> = IMPLS.iter().map(|(n, k)| Row::new(n, *k)).collect();
    let impls: Vec<Guards> = (0..IMPLS.len()).map(|i| Guards::new(i, tokio)).collect();
    for (g, _) in impls.iter().zip(0..) {
        take_drop_loop(g, n / 10); // warm up
    }
    for _ in 0..mode.pick(5, 15) {
        for (i, g) in impls.iter().enumerate() {
            rows[i].samples.push(take_drop_loop(g, n));
        }
    }
    Table {
        title: "1. take + drop an unnamed guard, one thread".into(),
        unit: "ns/op",
        lower_is_better: true,
        rows,
    }
}

/// Scenario 2: take + drop on 2 threads contending for the same guard
/// source; reports ns/op/thread and how much the threads overlapped.
pub(crate) fn two_threads(mode: Mode, tokio: &tokio::runtime::Runtime) -> Table {
    let n = mode.pick(1_000_000, 5_000_000);
    let mut rows: Vec<Row> = IMPLS.iter().map(|(n, k)| Row::new(n, *k)).collect();
    let impls: Vec<Arc<Guards>> = (0..IMPLS.len())
        .map(|i| Arc::new(Guards::new(i, tokio)))
        .collect();
    let mut overlaps = vec![Vec::new(); IMPLS.len()];
    for _ in 0..mode.pick(5, 11) {
        for (i, g) in impls.iter().enumerate() {
            let barrier = Arc::new(Barrier::new(2));
            let threads: Vec<_> = (0..2)
                .map(|_| {
                    let (g, barrier) = (g.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        let start = Instant::now();
                        let ns = take_drop_loop(&g, n);
                        (start, Instant::now(), ns)
                    })
                })
                .collect();
            let spans: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            let ns = (spans[0].2 + spans[1].2) / 2.0;
            let union = spans[0].1.max(spans[1].1) - spans[0].0.min(spans[1].0);
            let inter = spans[0]
                .1
                .min(spans[1].1)
                .saturating_duration_since(spans[0].0.max(spans[1].0));
            overlaps[i].push(inter.as_secs_f64() / union.as_secs_f64());
            rows[i].samples.push(ns);
        }
    }
    for (row, o) in rows.iter_mut().zip(overlaps) {
        row.note = format!(
            "threads overlapped {:.0}%",
            100.0 * crate::stats::median(&o)
        );
    }
    Table {
        title: "2. take + drop, 2 threads contending".into(),
        unit: "ns/op/thread",
        lower_is_better: true,
        rows,
    }
}

/// Scenario 3: 1,000,000 guards held at once, then dropped: ns per guard,
/// heap allocations and bytes per guard, and the guard's size.
/// Scenario 3; also returns the heap allocations the graceful-core guards
/// made in the last round (the target is a number: zero).
pub(crate) fn million_held(mode: Mode, tokio: &tokio::runtime::Runtime) -> (Table, usize) {
    const N: usize = 1_000_000;
    let mut rows: Vec<Row> = IMPLS.iter().map(|(n, k)| Row::new(n, *k)).collect();
    let sizes = [
        std::mem::size_of::<Arc<()>>(),
        std::mem::size_of::<CounterGuard>(),
        std::mem::size_of::<graceful_core::Guard>(),
        std::mem::size_of::<tokio_util::task::task_tracker::TaskTrackerToken>(),
        std::mem::size_of::<tokio_graceful::ShutdownGuard>(),
        std::mem::size_of::<async_shutdown::DelayShutdownToken<()>>(),
    ];
    let mut allocs = vec![(0usize, 0usize); IMPLS.len()];
    let mut held: Vec<Held> = Vec::with_capacity(N);
    for _ in 0..mode.pick(3, 7) {
        for (i, row) in rows.iter_mut().enumerate() {
            let g = Guards::new(i, tokio);
            held.clear();
            let (a0, b0) = alloc::counting(true);
            let t0 = Instant::now();
            for _ in 0..N {
                held.push(g.take());
            }
            held.clear();
            let ns = t0.elapsed().as_nanos() as f64 / N as f64;
            let (a1, b1) = alloc::counting(false);
            allocs[i] = (a1 - a0, b1 - b0);
            row.samples.push(ns);
            drop(g);
        }
    }
    for (i, row) in rows.iter_mut().enumerate() {
        let (a, b) = allocs[i];
        row.note = format!(
            "{:.2} allocs, {:.1} heap bytes per guard; size_of {} bytes",
            a as f64 / N as f64,
            b as f64 / N as f64,
            sizes[i]
        );
    }
    let ours = IMPLS
        .iter()
        .position(|(_, kind)| *kind == Kind::Ours)
        .expect("one row is ours");
    let table = Table {
        title: "3. 1,000,000 guards held at once, then dropped".into(),
        unit: "ns/guard",
        lower_is_better: true,
        rows,
    };
    (table, allocs[ours].0)
}
