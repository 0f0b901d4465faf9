//! The smallest complete TCP service on graceful-smol, to copy: a line echo
//! server, stopped by SIGTERM or Ctrl+C.
//!
//! ```text
//! cargo run --example smol_minimal       # listens on 127.0.0.1:7000 (or the address given)
//! nc localhost 7000                      # each line comes back
//! ```
//!
//! At the first signal the listener closes and each connection's input
//! ends: a line being echoed is still written, then the connection closes
//! and the process exits 0 (1 if the 30 s deadline had to cut some).

use futures::io::BufReader;
use futures::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, StreamExt};
use graceful_smol as rt;
use rt::{ServeConfig, Shutdown, SignalConfig};

fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:7000".into());
    let listener = std::net::TcpListener::bind(addr)?;
    let runtime = rt::Runtime::new()?;
    let shutdown = Shutdown::new();
    rt::signals(&shutdown, SignalConfig::default())?;
    println!("listening on {}", listener.local_addr()?);
    let echo = |stream: rt::Stream, _conn| async move {
        let (input, mut output) = stream.split();
        let mut lines = BufReader::new(input).lines();
        while let Some(line) = lines.next().await {
            output.write_all(format!("{}\n", line?).as_bytes()).await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let outcome = runtime.block_on(rt::serve(listener, &shutdown, ServeConfig::default(), echo))?;
    std::process::exit(outcome.exit_code());
}
