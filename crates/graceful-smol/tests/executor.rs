//! The smol adapter's tasks run on one executor thread per core.

use std::sync::mpsc;
use std::time::Duration;

use graceful_smol::Runtime;

#[test]
fn tasks_run_on_one_thread_per_core() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if std::env::var_os("SMOL_THREADS").is_some() || cores < 2 {
        eprintln!("skipped: SMOL_THREADS set or a single core");
        return;
    }
    let rt = Runtime::new().unwrap();
    // Each task blocks its thread until every other one has started: with
    // fewer threads than tasks, the last ones never start.
    let (started_tx, started) = mpsc::channel();
    let (release_tx, release) = std::sync::mpsc::channel::<()>();
    let release = std::sync::Arc::new(std::sync::Mutex::new(release));
    for _ in 0..cores {
        let (started_tx, release) = (started_tx.clone(), release.clone());
        rt.spawn(async move {
            let name = std::thread::current().name().map(str::to_string);
            started_tx.send(name).unwrap();
            let _ = release
                .lock()
                .unwrap()
                .recv_timeout(Duration::from_secs(10));
        });
    }
    let mut names = Vec::new();
    for _ in 0..cores {
        let name = started
            .recv_timeout(Duration::from_secs(5))
            .expect("a task never started: fewer executor threads than cores");
        names.push(name.unwrap_or_default());
    }
    drop(release_tx);
    names.sort();
    names.dedup();
    assert_eq!(names.len(), cores, "{names:?}");
    assert!(
        names.iter().all(|n| n.starts_with("graceful-smol-")),
        "{names:?}"
    );
}
