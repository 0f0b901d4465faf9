//! TCP echo server on smol: the same service as `tokio_echo`, only the
//! adapter differs.
//!
//! ```text
//! cargo run --example smol_echo -- --delay-ms 2000
//! ```

use graceful_smol as rt;

#[path = "common/mod.rs"]
mod common;
#[path = "common/echo.rs"]
mod echo;

fn main() {
    echo::main("smol_echo");
}
