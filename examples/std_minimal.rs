//! The smallest complete service on graceful-std, to copy: a blocking line
//! echo server, a thread per connection, no async runtime.
//!
//! ```text
//! cargo run --example std_minimal        # listens on 127.0.0.1:7000 (or the address given)
//! nc localhost 7000                      # each line comes back
//! ```
//!
//! At the first SIGTERM or Ctrl+C the listener closes and each connection's
//! blocking read returns end-of-stream; the process exits 0 once every
//! connection ended (1 if the 30 s deadline had to cut some).

use std::io::{BufRead, BufReader, Write};

use graceful_std as rt;
use rt::{Conn, ServeConfig, Shutdown, SignalConfig};

fn echo(stream: rt::Stream, _conn: Conn) -> std::io::Result<()> {
    let mut output = stream.get_ref();
    for line in BufReader::new(stream.get_ref()).lines() {
        writeln!(output, "{}", line?)?;
    }
    Ok(())
}

fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:7000".into());
    let listener = std::net::TcpListener::bind(addr)?;
    let shutdown = Shutdown::new();
    rt::signals(&shutdown, SignalConfig::default())?;
    println!("listening on {}", listener.local_addr()?);
    let outcome = rt::serve_blocking(listener, &shutdown, ServeConfig::default(), echo)?;
    std::process::exit(outcome.exit_code());
}
