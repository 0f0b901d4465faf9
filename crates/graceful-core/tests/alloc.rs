//! Unnamed guards cost no heap allocation (DESIGN §8).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

use graceful_core::Shutdown;

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    // Only the measuring thread counts: the test harness's own threads may
    // allocate at any time. Const-initialised, so reading it never
    // allocates.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

unsafe impl GlobalAlloc for Counting {
    // SAFETY: forwards to the system allocator unchanged; only counts calls.
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCS.fetch_add(1, Ordering::SeqCst);
        }
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn a_million_unnamed_guards_and_counts_allocate_nothing() {
    let shutdown = Shutdown::new();
    let clone = shutdown.clone();
    COUNTING.with(|c| c.set(true));
    let before = ALLOCS.load(Ordering::SeqCst);
    // Under Miri (which checks the allocator above) fewer rounds suffice.
    let rounds = if cfg!(miri) { 1_000 } else { 1_000_000 };
    for _ in 0..rounds {
        let g = clone.guard();
        std::hint::black_box(&g);
        std::hint::black_box(clone.held());
        drop(g);
    }
    let after = ALLOCS.load(Ordering::SeqCst);
    assert_eq!(after - before, 0, "allocations for {rounds} guards");
    assert_eq!(
        std::mem::size_of::<graceful_core::Guard>(),
        std::mem::size_of::<usize>()
    );
    // Sanity: the counter does count (this must allocate).
    let v = std::hint::black_box(vec![1u8; 16]);
    assert!(ALLOCS.load(Ordering::SeqCst) > after);
    drop(v);
}
