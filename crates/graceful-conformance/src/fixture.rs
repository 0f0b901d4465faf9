//! The line service the scenarios serve: a few commands that make a
//! connection fast, slow, stuck or broken on demand.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::io::BufReader;
use futures::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, FutureExt};
use graceful_core::server::Idle;
use graceful_core::{Conn, Runtime};

/// Serves one connection, line by line:
///
/// - `sleep N`: waits N ms on the runtime's clock, answers `slept N`;
/// - `hang`: never answers and never ends (only a force ends it);
/// - `panic`: the handler panics;
/// - `wait-trigger`: answers `stopping` once the server is triggered;
/// - `big N`: answers N bytes of `x` and a newline, written in pieces, so
///   its writes block while the client does not read;
/// - `bye`: answers `bye`, and `bye` again at end-of-stream: whether the
///   handler ran after its input ended;
/// - anything else is echoed back.
///
/// Returns at end-of-stream.
pub async fn line_service<S, R>(stream: S, conn: Conn, rt: R) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: Runtime,
{
    observed_line_service(stream, conn, rt, |_, _| {}, None).await
}

/// [`line_service`], calling `observe(peer, command)` for each command it
/// read, before acting on it (and after a `sleep`'s timer is armed, so a
/// clock moved after the observation cannot be missed by the sleep);
/// telling `idle`, if given, when it waits for a next command with every
/// command read answered.
pub async fn observed_line_service<S, R>(
    stream: S,
    conn: Conn,
    rt: R,
    observe: impl Fn(SocketAddr, &str),
    idle: Option<Arc<Idle>>,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
    R: Runtime,
{
    let (r, mut w) = stream.split();
    let mut r = BufReader::new(r);
    let mut line = String::new();
    let mut bye = false;
    loop {
        line.clear();
        if let Some(idle) = idle.as_ref().filter(|_| r.buffer().is_empty()) {
            idle.set_idle();
        }
        if r.read_line(&mut line).await? == 0 {
            if bye {
                w.write_all(b"bye\n").await?;
                w.flush().await?;
            }
            return Ok(());
        }
        let cmd = line.trim_end();
        let sleep = match cmd.strip_prefix("sleep ") {
            Some(ms) => {
                let ms: u64 = ms.parse().map_err(|_| io::Error::other("bad sleep"))?;
                Some((ms, rt.sleep(Duration::from_millis(ms))))
            }
            None => None,
        };
        observe(conn.peer_addr(), cmd);
        let reply = if let Some((ms, sleep)) = sleep {
            sleep.await;
            format!("slept {ms}\n")
        } else if cmd == "hang" {
            std::future::pending::<()>().await;
            unreachable!()
        } else if cmd == "panic" {
            panic!("the fixture was asked to panic");
        } else if cmd == "bye" {
            bye = true;
            "bye\n".to_string()
        } else if cmd == "wait-trigger" {
            conn.triggered().await;
            "stopping\n".to_string()
        } else if let Some(n) = cmd.strip_prefix("big ") {
            static PIECE: [u8; 64 << 10] = [b'x'; 64 << 10];
            let mut n: usize = n.parse().map_err(|_| io::Error::other("bad big"))?;
            while n > 0 {
                let len = n.min(PIECE.len());
                w.write_all(&PIECE[..len]).await?;
                n -= len;
            }
            "\n".to_string()
        } else {
            line.clone()
        };
        w.write_all(reply.as_bytes()).await?;
        w.flush().await?;
    }
}

/// Sees each command a [`line_service`] reads, with the connection's peer
/// (see [`observed_line_service`]). The default sees nothing.
#[derive(Clone)]
pub struct Observer(Arc<ObserveFn>);

type ObserveFn = dyn Fn(SocketAddr, &str) + Send + Sync;

impl Observer {
    /// An observer calling `f`.
    pub fn new(f: impl Fn(SocketAddr, &str) + Send + Sync + 'static) -> Observer {
        Observer(Arc::new(f))
    }
}

impl Default for Observer {
    fn default() -> Self {
        Observer::new(|_, _| {})
    }
}

impl std::fmt::Debug for Observer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Observer")
    }
}

/// [`line_service`] as a `serve` handler, its commands seen by `observer`,
/// telling the stream's [`Idle`] state (taken by `idle`) if given.
pub fn handler<S, R>(
    rt: R,
    observer: Observer,
    idle: Option<fn(&S) -> Arc<Idle>>,
) -> impl FnMut(S, Conn) -> BoxFuture<'static, io::Result<()>> + Send + 'static
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    R: Runtime,
{
    move |stream, conn| {
        let observer = observer.clone();
        let idle = idle.map(|idle| idle(&stream));
        observed_line_service(
            stream,
            conn,
            rt.clone(),
            move |peer, cmd| (observer.0)(peer, cmd),
            idle,
        )
        .boxed()
    }
}
