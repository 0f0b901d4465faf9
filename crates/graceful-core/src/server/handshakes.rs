//! Closing a listener without resetting a connection the kernel completed
//! after the last accept.
//!
//! The kernel completes TCP handshakes on a listening socket by itself and
//! queues the connections for `accept`. A listener closing after its
//! backlog was taken still resets the connections completed in between
//! (microseconds, but a client reconnecting under load hits it): that
//! client sees its new connection reset, a failed request. Before the last
//! look at the backlog, the closing server attaches a filter that drops
//! every packet arriving at the listening socket (never at its accepted
//! connections, which are sockets of their own): a client's SYN goes
//! unanswered, its retransmission (a second later) finds the port closed
//! and is refused, which every client treats as "nothing listens here".
//!
//! The filter stays on the socket, so it is attached only to a socket this
//! process alone holds: not to one inherited by socket activation (systemd
//! keeps it and queues connections for the next start), nor to one handed
//! to a successor by a zero-downtime restart.

/// The socket cookies (Linux's unique socket ids) of the listeners this
/// process inherited.
#[cfg(any(target_os = "linux", target_os = "android"))]
static INHERITED: std::sync::Mutex<Vec<u64>> = std::sync::Mutex::new(Vec::new());

/// Records that `listener` was inherited from another process, which may
/// still hold it: its handshakes are never stopped. Called for every
/// listener taken by [`systemd::activated_listeners`](crate::systemd::activated_listeners).
pub fn mark_inherited<S: std::os::fd::AsFd>(listener: &S) {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Ok(cookie) = socket2::SockRef::from(listener).cookie() {
        INHERITED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(cookie);
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = listener;
}

/// Stops the kernel completing new connections on `listener`, which is about
/// to close (see the module docs): returns whether it did. It does not when
/// `shared` (the listener was handed to a successor), when the listener
/// was inherited, and off Linux.
pub(crate) fn stop_handshakes<S: std::os::fd::AsFd>(listener: &S, shared: bool) -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let socket = socket2::SockRef::from(listener);
        if shared {
            return false;
        }
        if let Ok(cookie) = socket.cookie() {
            let inherited = INHERITED.lock().unwrap_or_else(|p| p.into_inner());
            if inherited.contains(&cookie) {
                return false;
            }
        }
        // One classic BPF instruction, `ret #0`: keep no byte of any packet.
        const BPF_RET_K: u16 = 0x06;
        let drop_all = [socket2::SockFilter::new(BPF_RET_K, 0, 0, 0)];
        match socket.attach_filter(&drop_all) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("cannot stop handshakes on a closing listener: {e}");
                false
            }
        }
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = (listener, shared);
        false
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};
    use std::time::Duration;

    fn connects(listener: &TcpListener) -> bool {
        let addr = listener.local_addr().unwrap();
        TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
    }

    #[test]
    fn a_stopped_listener_completes_no_connection_and_keeps_its_queue() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut queued = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert!(stop_handshakes(&listener, false));
        assert!(!connects(&listener), "a handshake completed after the stop");
        // What was queued before the stop is still there to take, and its
        // connection works: the filter is on the listener only.
        let (mut accepted, _) = listener.accept().unwrap();
        std::io::Write::write_all(&mut accepted, b"x").unwrap();
        let mut b = [0u8; 1];
        queued.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
    }

    #[test]
    fn an_inherited_or_shared_listener_is_left_alone() {
        let shared = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(!stop_handshakes(&shared, true));
        assert!(connects(&shared));

        let inherited = TcpListener::bind("127.0.0.1:0").unwrap();
        mark_inherited(&inherited);
        assert!(!stop_handshakes(&inherited, false));
        assert!(connects(&inherited));
    }
}
