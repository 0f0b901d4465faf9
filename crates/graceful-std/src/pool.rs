use std::collections::VecDeque;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use event_listener::{Event, Listener};
use graceful_core::Shutdown;

/// Worker threads that take jobs until the shutdown is triggered, finish
/// the job they are running, then exit. A job that panics costs that job
/// alone: its worker goes on to the next.
///
/// The pool is a stage of the shutdown it was made with: each running job
/// holds a named guard on it, so the shutdown drains only after the jobs in
/// progress finished, and a forced drain's report names them. Jobs still
/// queued at the trigger are not started; [`join`](Self::join) hands them
/// back so the caller can keep them (write them to disk, requeue them
/// elsewhere) instead of losing them.
pub struct WorkerPool<J> {
    shared: Arc<Shared<J>>,
    stage: Shutdown,
    threads: Vec<JoinHandle<()>>,
}

struct Shared<J> {
    queue: Mutex<VecDeque<J>>,
    changed: Event,
    stage: Shutdown,
}

impl<J: Send + 'static> WorkerPool<J> {
    /// Starts `threads` workers that run `work` on each job, as a stage of
    /// `shutdown` named `name`.
    pub fn new<F>(shutdown: &Shutdown, name: &str, threads: usize, work: F) -> std::io::Result<Self>
    where
        F: Fn(J, &Shutdown) + Send + Sync + 'static,
    {
        let stage = shutdown.stage(name.to_string());
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            changed: Event::new(),
            stage: stage.clone(),
        });
        {
            let shared = shared.clone();
            stage.on_triggered(move |_| {
                shared.changed.notify(usize::MAX);
            });
        }
        let work = Arc::new(work);
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let shared = shared.clone();
            let work = work.clone();
            let name = format!("{name}-{i}");
            handles.push(
                std::thread::Builder::new()
                    .name(name.clone())
                    .spawn(move || worker(&shared, &name, &*work))?,
            );
        }
        Ok(WorkerPool {
            shared,
            stage,
            threads: handles,
        })
    }

    /// Queues `job`, or gives it back if the shutdown was triggered.
    pub fn submit(&self, job: J) -> Result<(), J> {
        // The trigger is looked at under the queue's lock: a job is queued
        // before a [`take_queued`](Self::take_queued) that follows the
        // trigger takes the queue, or it is refused, never queued after it.
        let mut queue = self.shared.lock();
        if self.stage.is_triggered() {
            return Err(job);
        }
        queue.push_back(job);
        drop(queue);
        // One more worker than were woken already: `notify(1)` only makes
        // sure one is, so a second job queued before the first woken worker
        // ran would wake nobody and wait with a worker idle.
        self.shared.changed.notify_additional(1);
        Ok(())
    }

    /// The pool's stage of the shutdown.
    pub fn stage(&self) -> &Shutdown {
        &self.stage
    }

    /// Jobs queued and not started.
    pub fn queued(&self) -> usize {
        self.shared.lock().len()
    }

    /// Waits for the workers to exit, at most until `deadline`; returns the
    /// jobs that were never started. Workers still running a job at the
    /// deadline are left to finish on their own (their guards show in the
    /// shutdown's report).
    pub fn join(mut self, deadline: Option<Instant>) -> Vec<J> {
        let drained = match deadline {
            Some(d) => self.stage.wait_drained_until(d),
            None => {
                self.stage.wait_drained();
                true
            }
        };
        if drained {
            for t in std::mem::take(&mut self.threads) {
                let _ = t.join();
            }
        }
        self.take_queued()
    }

    /// Takes the jobs queued and not started, and logs how many there
    /// were, without waiting for the workers: for a pool shared with the
    /// code that submits to it. After the trigger no worker starts a job,
    /// and no job is queued, so once the stage drained what this returns
    /// is final.
    pub fn take_queued(&self) -> Vec<J> {
        let left: Vec<J> = self.shared.lock().drain(..).collect();
        if !left.is_empty() {
            tracing::warn!(
                "{}: {} queued job(s) not started",
                self.stage.name().unwrap_or("pool"),
                left.len()
            );
        }
        left
    }
}

impl<J> Shared<J> {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<J>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn worker<J, F: Fn(J, &Shutdown)>(shared: &Shared<J>, name: &str, work: &F) {
    loop {
        let l = shared.changed.listen();
        // The guard comes before the trigger check and the pop: while it is
        // held the stage cannot drain, so a job never starts after its stage
        // drained (and the stages after it started).
        let running = shared.stage.guard_named(format!("{name} job"));
        if shared.stage.is_triggered() {
            return;
        }
        let job = shared.lock().pop_front();
        match job {
            Some(job) => {
                // No subscription while busy: a submit wakes the first
                // subscriber not yet woken, which must be an idle worker.
                // Dropping a woken subscriber passes its wake-up on.
                drop(l);
                // A job's panic is its own: the worker goes on to the next.
                let ran = catch_unwind(AssertUnwindSafe(|| work(job, &shared.stage)));
                if ran.is_err() {
                    tracing::error!("{name}: a job panicked; the worker goes on");
                }
                drop(running);
            }
            None => {
                drop(running);
                l.wait();
            }
        }
    }
}

impl<J> fmt::Debug for WorkerPool<J> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerPool")
            .field("stage", &self.stage)
            .field("threads", &self.threads.len())
            .finish_non_exhaustive()
    }
}
