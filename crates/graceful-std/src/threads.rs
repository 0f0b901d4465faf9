//! The threads connections are served on.
//!
//! A thread whose connection ended waits for the next connection instead of
//! exiting, and exits only after [`IDLE`] without one. A thread's exit
//! unmaps its stack and its signal stack, and every unmap in a process with
//! thousands of threads interrupts every other core to flush its TLB: when
//! thousands of idle connections end together (at a stop), exits made that
//! the slowest part of the stop. Reused threads just wait again. A busy
//! server also stops paying a thread start per connection.
//!
//! Every job gets a thread of its own (a job may block), but the caller of
//! [`run`] starts at most one: when jobs come faster than threads start (at
//! a stop, thousands of parked connections are woken at once by one thread)
//! they queue, and each thread as it starts starts the next one while more
//! jobs are queued than threads wait. The caller goes on at once, the
//! starts run on the new threads, and a thread whose job ended meanwhile
//! takes a queued job instead of a new thread being started for it.
//!
//! Waiting threads are woken one at a time: a queued job wakes a sleeping
//! thread only when no wake-up is on its way, and each woken thread, as it
//! takes a job, wakes the next while jobs are left. Thousands of jobs
//! queued at once (a stop) wake each sleeping thread once, where a
//! wake-up per job cost a system call each and woke threads that then
//! found the queue taken: a stop closing 2000 idle connections took
//! about twice as long.
//!
//! Invariants: `idle` counts the threads waiting in [`Pool::worker`], of
//! which `sleeping` are asleep; `wakes` the wake-ups sent and not yet
//! taken; `starting` the threads started and not yet past their start.
//! While jobs are queued and a thread sleeps, a wake-up is on its way
//! (one is sent when a job is queued or taken and none is). A job is
//! queued while fewer jobs are queued than threads wait (one of them takes
//! it; a waiting thread leaves only when the queue is empty), or while a
//! thread is starting: whenever more jobs are queued than threads wait, a
//! thread is starting, and before it runs its own job it starts another,
//! which takes a queued one. So every queued job is taken by a waiting
//! thread or gets a new one, whatever the running jobs do, as long as
//! threads can be started. When one cannot (a process at its thread or
//! PID limit, at a stop that wakes thousands of parked connections at
//! once), the job it was started for is queued like the others, for a
//! thread whose job ends: a connection with a request in flight waits a
//! moment rather than being dropped. Only with no thread at all does
//! [`run`] fail: then its job and those queued while its thread was
//! starting, which no thread would ever reach, are abandoned (each told
//! so, and releases what it holds).

use std::collections::VecDeque;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

/// How long a thread waits for a next connection before it exits.
const IDLE: Duration = Duration::from_secs(10);

/// A job's fate: run on a connection thread, or abandoned because no
/// thread will ever run it (it then releases what it holds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    Run,
    Abandoned,
}

type Job = Box<dyn FnOnce(Fate) + Send>;

struct Pool {
    /// How long a thread waits for a next job before it exits.
    idle: Duration,
    state: Mutex<State>,
    work: Condvar,
    /// Makes every thread start fail, as an exhausted process's do.
    #[cfg(test)]
    fail_starts: std::sync::atomic::AtomicBool,
    /// How many wake-ups were sent to sleeping threads.
    #[cfg(test)]
    woken: std::sync::atomic::AtomicUsize,
    /// How many times a thread went to sleep.
    #[cfg(test)]
    slept: std::sync::atomic::AtomicUsize,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Job>,
    idle: usize,
    /// Of the `idle` threads, those asleep on `work`.
    sleeping: usize,
    /// Wake-ups sent to sleeping threads and not yet taken by one.
    wakes: usize,
    starting: usize,
    /// The threads alive (started, not exited).
    threads: usize,
}

impl State {
    /// Whether a sleeping thread must be woken for the queued jobs: one
    /// is woken at a time, and each as it takes a job wakes the next while
    /// jobs are left (so a burst of jobs does not wake a thread each, and
    /// every queued job still reaches a thread whatever the running jobs
    /// do). Counts the wake-up as sent.
    fn wake_one(&mut self) -> bool {
        let wake = !self.queue.is_empty() && self.sleeping > 0 && self.wakes == 0;
        self.wakes += usize::from(wake);
        wake
    }
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool::new(IDLE))
}

impl Pool {
    fn new(idle: Duration) -> Pool {
        Pool {
            idle,
            state: Mutex::default(),
            work: Condvar::new(),
            #[cfg(test)]
            fail_starts: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            woken: std::sync::atomic::AtomicUsize::new(0),
            #[cfg(test)]
            slept: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Wakes a sleeping thread, if `wake` (from [`State::wake_one`]).
    fn wake(&self, wake: bool) {
        if wake {
            #[cfg(test)]
            self.woken.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.work.notify_one();
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `first`, if any, then takes jobs until none comes for `idle`.
    fn worker(&'static self, first: Option<Job>) {
        self.state().threads += 1;
        self.started(first.is_some());
        let mut job = first;
        loop {
            // A job's panic is its own (the server's handlers already
            // catch theirs); the thread goes on serving.
            if let Some(job) = job.take() {
                let _ = catch_unwind(AssertUnwindSafe(|| job(Fate::Run)));
            }
            let mut st = self.state();
            st.idle += 1;
            loop {
                if let Some(next) = st.queue.pop_front() {
                    st.idle -= 1;
                    job = Some(next);
                    let wake = st.wake_one();
                    drop(st);
                    self.wake(wake);
                    break;
                }
                st.sleeping += 1;
                #[cfg(test)]
                self.slept.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (guard, timeout) = self
                    .work
                    .wait_timeout(st, self.idle)
                    .unwrap_or_else(|p| p.into_inner());
                st = guard;
                st.sleeping -= 1;
                // Woken, or back by itself (a timeout, a spurious return):
                // either way a wake-up is counted as taken. If the one
                // woken was another thread, that one still comes, and
                // `wakes` undercounts it until then: at worst one wake-up
                // too many is sent.
                st.wakes = st.wakes.saturating_sub(1);
                if timeout.timed_out() && st.queue.is_empty() {
                    st.idle -= 1;
                    st.threads -= 1;
                    return;
                }
            }
        }
    }
}

/// Runs `job` on a waiting connection thread, or on a new one: calls it
/// with [`Fate::Run`] there, or with [`Fate::Abandoned`] if no thread ever
/// will (then the error is returned, for the log).
pub(crate) fn run(job: impl FnOnce(Fate) + Send + 'static) -> io::Result<()> {
    pool().run(Box::new(job))
}

impl Pool {
    fn run(&'static self, job: Job) -> io::Result<()> {
        {
            let mut st = self.state();
            if st.queue.len() < st.idle || st.starting > 0 {
                st.queue.push_back(job);
                let wake = st.wake_one();
                drop(st);
                self.wake(wake);
                return Ok(());
            }
            st.starting += 1;
        }
        match self.start(Some(job)) {
            Ok(()) => Ok(()),
            Err((e, job)) => self.start_failed(e, job),
        }
    }

    /// A thread started for `job` could not be: `job` is queued like the
    /// others for a thread whose job ends, or for one starting. With no
    /// thread at all, neither it nor any job queued meanwhile (queued
    /// because this start was under way) would ever run: all are
    /// abandoned, and the error returned.
    fn start_failed(&'static self, e: io::Error, job: Option<Job>) -> io::Result<()> {
        let mut st = self.state();
        st.starting -= 1;
        if st.threads > 0 || st.starting > 0 {
            st.queue.extend(job);
            let wake = st.wake_one();
            drop(st);
            self.wake(wake);
            tracing::warn!("cannot start a thread: {e}; the task waits for a busy one");
            return Ok(());
        }
        let stranded: Vec<Job> = job.into_iter().chain(st.queue.drain(..)).collect();
        drop(st);
        for job in stranded {
            let _ = catch_unwind(AssertUnwindSafe(|| job(Fate::Abandoned)));
        }
        Err(e)
    }

    /// Starts a thread that runs `first`, if any, then takes queued jobs;
    /// if it cannot, gives `first` back with the error.
    fn start(&'static self, first: Option<Job>) -> Result<(), (io::Error, Option<Job>)> {
        #[cfg(test)]
        if self.fail_starts.load(std::sync::atomic::Ordering::SeqCst) {
            return Err((io::Error::other("thread starts fail in this test"), first));
        }
        // The job is taken back from the thread's closure if the thread
        // could not start (the closure is dropped unrun).
        let slot = std::sync::Arc::new(Mutex::new(first));
        let theirs = slot.clone();
        let started = std::thread::Builder::new()
            .name("graceful-conn".into())
            .spawn(move || {
                let first = theirs.lock().unwrap_or_else(|p| p.into_inner()).take();
                drop(theirs);
                self.worker(first)
            });
        match started {
            Ok(_) => Ok(()),
            Err(e) => Err((e, slot.lock().unwrap_or_else(|p| p.into_inner()).take())),
        }
    }

    /// A new thread's start (`busy`: with a job of its own): while more
    /// jobs are queued than threads wait (this one too, if it has no job),
    /// starts a thread that takes the first of them.
    fn started(&'static self, busy: bool) {
        let mut st = self.state();
        st.starting -= 1;
        let waiting = st.idle + usize::from(!busy);
        if st.queue.len() <= waiting || st.starting > 0 {
            return;
        }
        st.starting += 1;
        drop(st);
        if let Err((e, _)) = self.start(None) {
            // The jobs stay queued for the threads whose jobs end.
            tracing::error!("no thread for queued tasks: {e}");
            self.state().starting -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use super::*;

    /// A pool of the test's own.
    fn own() -> &'static Pool {
        Box::leak(Box::new(Pool::new(IDLE)))
    }

    #[test]
    fn a_thread_with_no_job_for_its_idle_time_exits() {
        let pool: &'static Pool = Box::leak(Box::new(Pool::new(Duration::from_millis(50))));
        let (tx, rx) = mpsc::channel();
        pool.run(Box::new(move |_| tx.send(()).unwrap())).unwrap();
        rx.recv().unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while pool.state().idle == 0 {
            assert!(std::time::Instant::now() < until, "never back in the pool");
            std::thread::yield_now();
        }
        while pool.state().idle != 0 {
            assert!(
                std::time::Instant::now() < until,
                "the idle thread never left"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_thread_whose_job_ended_takes_the_next() {
        let pool = own();
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        pool.run(Box::new(move |_| {
            tx.send(std::thread::current().id()).unwrap()
        }))
        .unwrap();
        let first = rx.recv().unwrap();
        // Wait until the thread is back in the pool.
        while pool.state().idle == 0 {
            std::thread::yield_now();
        }
        pool.run(Box::new(move |_| {
            tx2.send(std::thread::current().id()).unwrap()
        }))
        .unwrap();
        assert_eq!(rx.recv().unwrap(), first, "the idle thread was reused");
        assert_eq!(pool.state().queue.len(), 0);
    }

    #[test]
    fn jobs_that_block_each_get_a_thread() {
        let pool = own();
        let (tx, rx) = mpsc::channel();
        let gate = std::sync::Arc::new(std::sync::Barrier::new(9));
        for _ in 0..8 {
            let (tx, gate) = (tx.clone(), gate.clone());
            pool.run(Box::new(move |_| {
                gate.wait();
                tx.send(()).unwrap();
            }))
            .unwrap();
            // The caller starts at most one thread; the others start
            // one another.
            assert!(pool.state().starting <= 1);
        }
        // All 8 run at once: the barrier needs every one of them.
        gate.wait();
        for _ in 0..8 {
            rx.recv_timeout(Duration::from_secs(10)).unwrap();
        }
    }

    /// A burst of jobs wakes each sleeping thread once (not a wake-up per
    /// job), and every job still gets a thread of its own: these jobs all
    /// block until the last one runs. (A thread that falls asleep during
    /// the burst, one started while another was about to take a job, may
    /// be woken once more.)
    #[test]
    fn a_burst_of_jobs_wakes_each_sleeping_thread_once() {
        use std::sync::atomic::Ordering::SeqCst;
        const ASLEEP: usize = 4;
        const JOBS: usize = 32;
        // The threads never leave by themselves while the test waits.
        let pool: &'static Pool = Box::leak(Box::new(Pool::new(Duration::from_secs(60))));
        let until = std::time::Instant::now() + Duration::from_secs(10);
        let gate = std::sync::Arc::new(std::sync::Barrier::new(ASLEEP + 1));
        for _ in 0..ASLEEP {
            let gate = gate.clone();
            pool.run(Box::new(move |_| {
                gate.wait();
            }))
            .unwrap();
        }
        gate.wait();
        // Every thread asleep (at least the 4), none starting; the counts
        // read then, under the pool's lock.
        let (asleep, woken, slept) = loop {
            let st = pool.state();
            if st.starting == 0 && st.idle >= ASLEEP && st.sleeping == st.idle {
                break (
                    st.sleeping,
                    pool.woken.load(SeqCst),
                    pool.slept.load(SeqCst),
                );
            }
            drop(st);
            assert!(std::time::Instant::now() < until, "the threads never slept");
            std::thread::sleep(Duration::from_millis(1));
        };
        // Each job says it runs, then waits at `end` while the counts are
        // read: none ends before every one has a thread.
        let (tx, running) = mpsc::channel();
        let end = std::sync::Arc::new(std::sync::Barrier::new(JOBS + 1));
        for _ in 0..JOBS {
            let (tx, end) = (tx.clone(), end.clone());
            pool.run(Box::new(move |_| {
                tx.send(()).unwrap();
                end.wait();
            }))
            .unwrap();
        }
        for _ in 0..JOBS {
            running.recv_timeout(Duration::from_secs(10)).unwrap();
        }
        let woken = pool.woken.load(SeqCst) - woken;
        let slept = pool.slept.load(SeqCst) - slept;
        end.wait();
        assert!(
            woken <= asleep + slept,
            "{woken} wake-ups for {asleep} sleeping threads, {slept} falling asleep"
        );
    }

    #[test]
    fn a_panicking_job_does_not_lose_its_thread() {
        let pool = own();
        let (tx, rx) = mpsc::channel();
        let tx2 = tx.clone();
        pool.run(Box::new(move |_| {
            tx.send(std::thread::current().id()).unwrap();
            panic!("a job panics");
        }))
        .unwrap();
        let first = rx.recv().unwrap();
        while pool.state().idle == 0 {
            std::thread::yield_now();
        }
        pool.run(Box::new(move |_| {
            tx2.send(std::thread::current().id()).unwrap()
        }))
        .unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)).unwrap(), first);
    }

    /// Sends on drop: whether a job was dropped.
    struct Dropped(mpsc::Sender<()>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }

    /// When no thread can be started and none runs, `run` fails for the
    /// job it would have started one for, and that job is dropped (its
    /// caller learns): nothing would ever take it.
    #[test]
    fn a_job_no_thread_can_start_for_fails_and_is_dropped() {
        let pool = own();
        pool.fail_starts
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let (tx, dropped) = mpsc::channel();
        let job = Dropped(tx);
        assert!(pool.run(Box::new(move |_| drop(job))).is_err());
        dropped.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(pool.state().starting, 0);
        assert_eq!(pool.state().queue.len(), 0);
    }

    /// A job queued while a thread was starting for another, whose start
    /// then fails with no thread alive, would never be taken: both are
    /// abandoned (each told so, to release what it holds), and the start's
    /// caller gets the error.
    #[test]
    fn jobs_queued_behind_a_start_that_fails_with_no_thread_are_abandoned() {
        let pool = own();
        let (tx, fates) = mpsc::channel();
        // A start under way (the caller's, below), no thread alive.
        pool.state().starting += 1;
        let t = tx.clone();
        pool.run(Box::new(move |fate| t.send(("queued", fate)).unwrap()))
            .unwrap();
        assert_eq!(pool.state().queue.len(), 1);
        let t = tx.clone();
        let own: Job = Box::new(move |fate| t.send(("own", fate)).unwrap());
        let failed = pool.start_failed(io::Error::other("no thread"), Some(own));
        assert!(failed.is_err());
        let mut got: Vec<_> = fates.try_iter().collect();
        got.sort_by_key(|(what, _)| *what);
        assert_eq!(got, [("own", Fate::Abandoned), ("queued", Fate::Abandoned)]);
        assert_eq!(pool.state().queue.len(), 0);
        assert_eq!(pool.state().starting, 0);
    }

    /// When no thread can be started but one is busy, the job is queued
    /// and runs once that thread's job ends, rather than being dropped (a
    /// parked connection woken at a stop, its request in flight, at the
    /// process's thread limit).
    #[test]
    fn a_job_no_thread_can_start_for_waits_for_a_busy_one() {
        let pool = own();
        let (release, gate) = mpsc::channel::<()>();
        let (tx, ran) = mpsc::channel();
        pool.run(Box::new(move |_| gate.recv().unwrap())).unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while pool.state().threads != 1 || pool.state().starting != 0 {
            assert!(
                std::time::Instant::now() < until,
                "the first thread never started"
            );
            std::thread::yield_now();
        }
        pool.fail_starts
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let tx2 = tx.clone();
        pool.run(Box::new(move |_| tx2.send("queued").unwrap()))
            .expect("queued for the busy thread");
        assert_eq!(pool.state().queue.len(), 1);
        assert!(ran.recv_timeout(Duration::from_millis(100)).is_err());
        release.send(()).unwrap();
        assert_eq!(ran.recv_timeout(Duration::from_secs(10)).unwrap(), "queued");
        drop(tx);
    }

    /// A job queued while a thread was starting, whose start of the next
    /// thread then fails, is taken by a thread whose job ends.
    #[test]
    fn a_queued_job_whose_thread_could_not_start_waits_for_one_whose_job_ends() {
        let pool = own();
        let (release, gate) = mpsc::channel::<()>();
        let (tx, ran) = mpsc::channel();
        pool.run(Box::new(move |_| gate.recv().unwrap())).unwrap();
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while pool.state().starting != 0 {
            assert!(
                std::time::Instant::now() < until,
                "the first thread never started"
            );
            std::thread::yield_now();
        }
        // The first thread is busy; a second one is (as if) starting.
        pool.state().starting += 1;
        let tx2 = tx.clone();
        pool.run(Box::new(move |_| tx2.send("queued").unwrap()))
            .unwrap();
        assert_eq!(pool.state().queue.len(), 1);
        // The starting thread cannot start the next one.
        pool.fail_starts
            .store(true, std::sync::atomic::Ordering::SeqCst);
        pool.started(true);
        assert_eq!(pool.state().starting, 0);
        assert!(ran.recv_timeout(Duration::from_millis(100)).is_err());
        // The busy thread's job ends: it takes the queued one.
        release.send(()).unwrap();
        assert_eq!(ran.recv_timeout(Duration::from_secs(10)).unwrap(), "queued");
        drop(tx);
    }
}
