//! HTTP/1.1 + HTTP/2 server on smol, the flagship example:
//!
//! ```text
//! cargo run --example smol_http          # listens on 127.0.0.1:8080
//! curl localhost:8080/                   # waits 2 s, then "hello"
//! # press Ctrl+C during the wait: curl still gets "hello", the server
//! # logs the drain and exits 0
//! ```

use graceful_smol as rt;

#[path = "common/mod.rs"]
mod common;
#[path = "common/http.rs"]
mod http;

fn main() {
    http::main("smol_http");
}
