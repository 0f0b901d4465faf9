//! HTTP/1.1 + HTTP/2 server on plain threads (a thread per busy
//! connection; an idle one gives its thread back):
//!
//! ```text
//! cargo run --example std_http           # listens on 127.0.0.1:8080
//! curl localhost:8080/                   # waits 2 s, then "hello"
//! # press Ctrl+C during the wait: curl still gets "hello", the server
//! # logs the drain and exits 0
//! ```

use graceful_std as rt;

#[path = "common/mod.rs"]
mod common;
#[path = "common/http.rs"]
mod http;

fn main() {
    http::main("std_http");
}
