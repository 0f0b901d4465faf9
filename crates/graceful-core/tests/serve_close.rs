//! The order of a server's close: its idle connections are wound down only
//! once the listener is closed, after the close took its backlog. Closed
//! earlier, a pooled client that reconnects at once would reach a listener
//! still closing: with its handshakes stopped, its SYN goes unanswered and
//! it is refused only at the retransmission, a second later; without, its
//! connection may complete after the last look and be reset with its
//! request sent. Once the listener is closed, it is refused at once.

mod common;

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use common::{within, ThreadRuntime};
use graceful_core::server::{serve, Accept};
use graceful_core::{Conn, Reason, ServeConfig, Shutdown};

/// A real listener whose accept loop gets one connection, then waits; its
/// looks at the backlog record what the connection's handler knew then.
struct Listener {
    inner: TcpListener,
    first: Option<(Arc<TcpStream>, SocketAddr)>,
    conn: Arc<Mutex<Option<Conn>>>,
    /// At each look at the backlog: had the connection learnt that the
    /// listener closed?
    looks: Arc<Mutex<Vec<bool>>>,
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.inner.as_fd()
    }
}

impl Accept for Listener {
    type Socket = TcpStream;

    fn poll_accept(
        &mut self,
        _: &mut Context<'_>,
    ) -> Poll<io::Result<(Arc<TcpStream>, SocketAddr)>> {
        // After the first, nothing more comes until the trigger (which wakes
        // the accept loop itself).
        match self.first.take() {
            Some(accepted) => Poll::Ready(Ok(accepted)),
            None => Poll::Pending,
        }
    }

    fn accept_queued(&mut self) -> io::Result<Option<(Arc<TcpStream>, SocketAddr)>> {
        let conn = self.conn.lock().unwrap();
        let told = conn.as_ref().expect("no connection").is_listener_closed();
        self.looks.lock().unwrap().push(told);
        Ok(None)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

#[test]
fn idle_connections_are_told_only_once_the_backlog_was_taken() {
    within(20, || {
        let inner = TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(inner.local_addr().unwrap()).unwrap();
        let (socket, peer) = inner.accept().unwrap();
        let (conn, looks) = (Arc::new(Mutex::new(None)), Arc::new(Mutex::new(Vec::new())));
        let listener = Listener {
            inner,
            first: Some((Arc::new(socket), peer)),
            conn: conn.clone(),
            looks: looks.clone(),
        };
        let shutdown = Shutdown::new();
        // Exclusive: the close stops the handshakes and looks at the backlog
        // twice, 2 ms apart.
        let config = ServeConfig::new().exclusive_listener(true);
        let (served_tx, served) = std::sync::mpsc::channel();
        let server = {
            let (shutdown, conn) = (shutdown.clone(), conn.clone());
            std::thread::spawn(move || {
                graceful_core::block_on(serve(
                    &ThreadRuntime,
                    listener,
                    &shutdown,
                    config,
                    move |_socket: Arc<TcpStream>, track, c: Conn| {
                        *conn.lock().unwrap() = Some(c.clone());
                        let _ = served_tx.send(());
                        // An idle connection: it ends when told.
                        async move {
                            c.listener_closed().await;
                            drop(track);
                        }
                    },
                ))
            })
        };
        served
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the connection was never handed to its handler");
        shutdown.trigger(Reason::requested());
        let outcome = server.join().unwrap().unwrap();
        assert!(outcome.is_drained(), "{outcome:?}");
        let looks = looks.lock().unwrap().clone();
        assert!(!looks.is_empty(), "the close took no look at the backlog");
        assert!(
            looks.iter().all(|&told| !told),
            "the idle connection was told while the backlog was still taken: {looks:?}"
        );
        let told = conn.lock().unwrap().as_ref().unwrap().is_listener_closed();
        assert!(told, "the idle connection was never told");
    });
}
