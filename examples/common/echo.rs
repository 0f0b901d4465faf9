//! The TCP echo service, written once against the adapter contract
//! (`crate::rt`): each line read is written back after `--delay-ms`.
//!
//! At the stop signal the listener closes, a connection waiting for input
//! is shut down by the server at once (the handler tells it when it waits
//! with nothing left to answer) or reads end-of-stream and ends, a line
//! being delayed is still echoed in full, and the process exits with the
//! outcome's code.

use std::io;
use std::time::Duration;

use futures::io::BufReader;
use futures::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use graceful_core::Conn;

use crate::common::cli;
use crate::rt;

/// Echoes lines until the client, or the shutdown, ends the input.
async fn echo(
    stream: rt::Stream,
    conn: Conn,
    runtime: rt::Runtime,
    delay: Duration,
) -> io::Result<()> {
    let idle = stream.idle().clone();
    let (reader, mut writer) = stream.split();
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        // Every line read was answered: the server may close the
        // connection when its listener closes, without waking this task.
        if reader.buffer().is_empty() {
            idle.set_idle();
        }
        if reader.read_until(b'\n', &mut line).await? == 0 {
            tracing::debug!("{}: input ended", conn.peer_addr());
            return Ok(());
        }
        tracing::debug!(target: "request", "line from {}", conn.peer_addr());
        if !delay.is_zero() {
            runtime.sleep(delay).await;
        }
        writer.write_all(&line).await?;
        writer.flush().await?;
    }
}

/// The whole program: flags, signals, serve, exit code.
pub(crate) fn main(name: &str) -> ! {
    let started = cli::start(name, 0, rt::Runtime::new, rt::signals);
    let delay = started.args.delay;
    let handler_rt = started.runtime.clone();
    cli::exit(started.runtime.block_on(rt::serve(
        started.listener,
        &started.shutdown,
        started.args.serve_config(),
        move |stream, conn| echo(stream, conn, handler_rt.clone(), delay),
    )))
}
