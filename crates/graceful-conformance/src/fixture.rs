//! The line service the scenarios serve: a few commands that make a
//! connection fast, slow, stuck or broken on demand.

use std::io;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::io::BufReader;
use futures::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt};
use graceful_core::{Conn, Runtime};

/// Serves one connection, line by line:
///
/// - `sleep N`: waits N ms on the runtime's clock, answers `slept N`;
/// - `hang`: never answers and never ends (only a force ends it);
/// - `panic`: the handler panics;
/// - `wait-trigger`: answers `stopping` once the server is triggered;
/// - anything else is echoed back.
///
/// Returns at end-of-stream.
pub async fn line_service<S, R>(stream: S, conn: Conn, rt: R) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: Runtime,
{
    let (r, mut w) = stream.split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let cmd = line.trim_end();
        let reply = if let Some(ms) = cmd.strip_prefix("sleep ") {
            let ms: u64 = ms.parse().map_err(|_| io::Error::other("bad sleep"))?;
            rt.sleep(Duration::from_millis(ms)).await;
            format!("slept {ms}\n")
        } else if cmd == "hang" {
            std::future::pending::<()>().await;
            unreachable!()
        } else if cmd == "panic" {
            panic!("the fixture was asked to panic");
        } else if cmd == "wait-trigger" {
            conn.triggered().await;
            "stopping\n".to_string()
        } else {
            line.clone()
        };
        w.write_all(reply.as_bytes()).await?;
        w.flush().await?;
    }
}

/// [`line_service`] as a `serve` handler.
pub fn handler<S, R>(
    rt: R,
) -> impl FnMut(S, Conn) -> BoxFuture<'static, io::Result<()>> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: Runtime,
{
    move |stream, conn| line_service(stream, conn, rt.clone()).boxed()
}
