//! TCP echo server on plain threads: the same service as `tokio_echo`,
//! only the adapter differs (a connection on a thread while it is busy, an
//! idle one waiting with no thread; no async runtime).
//!
//! ```text
//! cargo run --example std_echo -- --delay-ms 2000
//! ```

use graceful_std as rt;

#[path = "common/mod.rs"]
mod common;
#[path = "common/echo.rs"]
mod echo;

fn main() {
    echo::main("std_echo");
}
