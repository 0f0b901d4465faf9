//! TCP echo server on tokio. Run it, talk to it with `nc 127.0.0.1 8080`,
//! press Ctrl+C: it stops accepting, finishes what it was echoing, and
//! exits 0.
//!
//! ```text
//! cargo run --example tokio_echo -- --delay-ms 2000
//! ```

use graceful_tokio as rt;

#[path = "common/mod.rs"]
mod common;
#[path = "common/echo.rs"]
mod echo;

fn main() {
    echo::main("tokio_echo");
}
