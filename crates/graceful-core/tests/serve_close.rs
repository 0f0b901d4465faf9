//! The order of a server's close: its idle connections are wound down
//! before the close takes the listener's backlog, so they do not wait for
//! its looks.

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
    /// listener closes?
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
fn idle_connections_are_told_before_the_close_takes_the_backlog() {
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
                        // An idle connection: it ends when told.
                        async move {
                            c.listener_closed().await;
                            drop(track);
                        }
                    },
                ))
            })
        };
        while conn.lock().unwrap().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        shutdown.trigger(Reason::requested());
        let outcome = server.join().unwrap().unwrap();
        assert!(outcome.is_drained(), "{outcome:?}");
        let looks = looks.lock().unwrap().clone();
        assert!(!looks.is_empty(), "the close took no look at the backlog");
        assert!(
            looks.iter().all(|&told| told),
            "a look at the backlog came before the idle connection was told: {looks:?}"
        );
    });
}
