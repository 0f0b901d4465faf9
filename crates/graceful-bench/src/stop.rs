//! Scenario 7: SIGTERM to exit of an idle server, against the same server
//! with no graceful handling (killed by SIGTERM's default action), with the
//! process's start cost alongside.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::stats::{Kind, Row, Table};
use crate::Mode;

/// Runs as an idle HTTP server (`graceful`: signals + http::serve; `bare`:
/// a plain accept loop, no signal handling) until stopped.
pub(crate) fn serve(kind: &str) -> ! {
    let rt = graceful_tokio::Runtime::new().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    println!("listening on {}", listener.local_addr().unwrap());
    let svc = hyper::service::service_fn(|_req| async {
        Ok::<_, std::convert::Infallible>(hyper::Response::new(
            http_body_util::Full::<bytes::Bytes>::from("hello\n"),
        ))
    });
    match kind {
        "graceful" => {
            let shutdown = graceful_core::Shutdown::new();
            graceful_tokio::signals(&shutdown, graceful_core::SignalConfig::default()).unwrap();
            let outcome = rt
                .block_on(graceful_tokio::http::serve(
                    listener,
                    &shutdown,
                    graceful_core::ServeConfig::default().progress_every(None),
                    svc,
                ))
                .unwrap();
            std::process::exit(outcome.exit_code())
        }
        _ => rt.block_on(async move {
            listener.set_nonblocking(true).unwrap();
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let _ = listener.accept().await;
            }
        }),
    }
}

/// Starts this binary as a server of `kind`; returns (start-to-listening
/// ms, SIGTERM-to-exit ms).
fn once(kind: &str) -> (f64, f64) {
    let t0 = Instant::now();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--serve", kind])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("listening on"), "{line:?}");
    let started = t0.elapsed();
    crate::idle::sigterm(&child);
    let t1 = Instant::now();
    child.wait().unwrap();
    (
        started.as_secs_f64() * 1e3,
        t1.elapsed().as_secs_f64() * 1e3,
    )
}

pub(crate) fn sigterm_to_exit(mode: Mode) -> Table {
    let mut rows = vec![
        Row::new(
            "no graceful handling (SIGTERM's default action)",
            Kind::Floor,
        ),
        Row::new("graceful: signals + http::serve, idle", Kind::Ours),
    ];
    let mut starts = vec![Vec::new(), Vec::new()];
    for _ in 0..mode.pick(5, 15) {
        for (i, kind) in ["bare", "graceful"].into_iter().enumerate() {
            let (start, stop) = once(kind);
            starts[i].push(start);
            rows[i].samples.push(stop);
        }
    }
    for (row, s) in rows.iter_mut().zip(starts) {
        row.note = format!(
            "process start to listening: {:.2} ms",
            crate::stats::median(&s)
        );
    }
    Table {
        title: "7. SIGTERM to exit of an idle server".into(),
        unit: "ms",
        lower_is_better: true,
        rows,
    }
}
