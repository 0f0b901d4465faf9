//! An existing axum application, made to stop gracefully: the only change is
//! serving the `Router` through `graceful_tokio::http::serve` instead of
//! `axum::serve`, and mounting the readiness endpoint.
//!
//! ```text
//! cargo run --example axum -- --delay-ms 2000
//! curl localhost:8080/slow      # Ctrl+C the server meanwhile: curl still gets its answer
//! ```

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Router};
use graceful_core::{Conn, Runtime as _, Shutdown, SignalConfig};
use graceful_tokio::http::Readiness;
use hyper_util::service::TowerToHyperService;

#[path = "common/mod.rs"]
mod common;
use common::cli;

#[derive(Clone)]
struct App {
    delay: Duration,
}

async fn slow(State(app): State<App>, Extension(conn): Extension<Conn>) -> String {
    tokio::time::sleep(app.delay).await;
    format!("hello {}\n", conn.peer_addr())
}

fn main() {
    let args = cli::parse("axum", 2000);
    cli::init_logging();
    let runtime = graceful_tokio::Runtime::new()
        .unwrap_or_else(|e| cli::fail(format!("cannot start the runtime: {e}")));
    let shutdown = Shutdown::new();
    graceful_tokio::signals(&shutdown, SignalConfig::default())
        .unwrap_or_else(|e| cli::fail(format!("cannot listen for signals: {e}")));
    let listener = cli::bind(args.addr);
    cli::serving(&runtime, &shutdown, &args);

    let ready = Readiness::new(&shutdown);
    let app = Router::new()
        .route("/slow", get(slow))
        .route("/", get(|| async { "hello from axum\n" }))
        .route(
            "/healthz",
            get(move || {
                let ready = ready.clone();
                async move { ready.response::<axum::body::Body>() }
            }),
        )
        .with_state(App { delay: args.delay });

    let served = runtime.block_on(graceful_tokio::http::serve(
        listener,
        &shutdown,
        args.serve_config(),
        TowerToHyperService::new(app),
    ));
    match served {
        Ok(outcome) => std::process::exit(outcome.exit_code()),
        Err(e) => cli::fail(format!("serve failed: {e}")),
    }
}
