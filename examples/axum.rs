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
use graceful_core::Conn;
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
    tracing::debug!(target: "request", "GET /slow from {}", conn.peer_addr());
    tokio::time::sleep(app.delay).await;
    format!("hello {}\n", conn.peer_addr())
}

fn main() {
    let started = cli::start(
        "axum",
        2000,
        graceful_tokio::Runtime::new,
        graceful_tokio::signals,
    );
    let ready = Readiness::new(&started.shutdown);
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
        .with_state(App {
            delay: started.args.delay,
        });

    cli::exit(started.runtime.block_on(graceful_tokio::http::serve(
        started.listener,
        &started.shutdown,
        started.args.serve_config(),
        TowerToHyperService::new(app),
    )))
}
