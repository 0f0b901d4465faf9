//! Closing a listener without resetting a connection the kernel completed
//! after the last accept.
//!
//! The kernel completes TCP handshakes on a listening socket by itself and
//! queues the connections for `accept`. A listener closing after its
//! backlog was taken still resets the connections completed in between
//! (microseconds, but a client reconnecting under load hits it): that
//! client sees its new connection reset, a failed request. With
//! [`ServeConfig::exclusive_listener`](super::ServeConfig::exclusive_listener),
//! before the last look at the backlog the closing server attaches a
//! filter to the listening socket that drops every segment opening a
//! connection (a SYN): a new client's SYN goes unanswered, and its
//! retransmission, a second later, finds the port closed and is refused.
//! A handshake caught half done (the client got its SYN-ACK, the kernel
//! had not yet taken its ACK) still completes: the server looks at the
//! backlog again [`SETTLE`] later, longer than a loopback or datacenter
//! round trip, and again until a look finds none, so that client is
//! served. A handshake whose ACK comes later still is reset by the close,
//! as it would have been. The connections accepted before the filter are
//! sockets of their own, without it; those the kernel completes after it
//! inherit it, and carry their data as any other (an established
//! connection has no use for a SYN).
//!
//! The filter stays on the socket, so it is attached only to a socket this
//! process alone holds: never to one recorded by [`mark_shared`] (inherited
//! by socket activation, or handed to a successor by a restart: once the
//! successor is handed over, while it holds it, see
//! [`mark_held_by_child`]), nor to a member of an `SO_REUSEPORT` group, nor
//! when the socket's identity cannot be read. A socket a restart handed
//! here, which the process that handed it held alone, is recorded by
//! [`mark_shared_while_parent`]: it is shared while that process (this
//! one's parent) lives and holds it, and this process's alone once it has
//! closed it (its pre-drain over, a second or more after its handover) or
//! exited.

/// How long after a look the backlog of a listener whose handshakes were
/// stopped is looked at again (after the first look, and after every look
/// that took connections): the time a handshake caught half done has to
/// complete.
pub(crate) const SETTLE: std::time::Duration = std::time::Duration::from_millis(2);

/// Records that another process may hold `listener` (it was inherited, or
/// handed over): its handshakes are never stopped. Called for every
/// listener taken by [`systemd::activated_listeners`](crate::systemd::activated_listeners)
/// and every listener a restart hands to its successor. Returns what
/// [`unmark_shared`] takes back, if the socket's identity could be read.
pub(crate) fn mark_shared<S: std::os::fd::AsFd>(listener: &S) -> Option<Marked> {
    imp::mark_shared(listener.as_fd()).map(Marked)
}

/// Records that `listener` was handed here by a restart from `parent`, the
/// process that held it alone and started this one: it is shared while
/// `parent` is this process's parent (alive) and has a descriptor for it,
/// and this process's alone after (see
/// [`activated_listeners`](crate::systemd::activated_listeners)).
pub(crate) fn mark_shared_while_parent<S: std::os::fd::AsFd>(listener: &S, parent: u32) {
    imp::mark_shared_while_parent(listener.as_fd(), parent);
}

/// The variable a restart passes its successor: the successor's PID
/// (written by the shell that execs it, as `LISTEN_PID` is; `-` where no
/// shell started it), the restarting process's PID, then for each listener
/// handed (in order) whether that process held it alone, `1` or `0`
/// (`PID:PID:1:0`). A value that names another process or another parent,
/// or another number of listeners (left by a program that passed its
/// environment on unread), is ignored: the listeners are then shared for
/// good.
pub(crate) const HANDED_ALONE_ENV: &str = "GRACEFUL_RESTART_ALONE";

/// [`HANDED_ALONE_ENV`]'s value for `listeners`, about to be handed to a
/// successor by this process (without the successor's PID, which its
/// shell writes): whether each is this process's alone now, before the
/// restart marks it shared, and was declared so by a server that served on
/// it ([`declare_exclusive`]).
pub(crate) fn handed_alone<'a, S: std::os::fd::AsFd + 'a>(
    listeners: impl Iterator<Item = &'a S>,
) -> String {
    let mut value = std::process::id().to_string();
    for listener in listeners {
        let alone = imp::is_declared(listener.as_fd()) && is_alone(listener, true);
        value.push_str(if alone { ":1" } else { ":0" });
    }
    value
}

/// Records that a server with
/// [`ServeConfig::exclusive_listener`](super::ServeConfig::exclusive_listener)
/// serves on `listener`: the application says it is this process's alone,
/// which a restart then tells its successor (see [`handed_alone`]).
pub(crate) fn declare_exclusive<S: std::os::fd::AsFd>(listener: &S) {
    imp::declare(listener.as_fd());
}

/// Reads [`HANDED_ALONE_ENV`] and removes it (children do not inherit it):
/// the PID of the process that handed the `count` listeners, and which it
/// held alone; `None` when unset, malformed, or not this process's (see
/// [`HANDED_ALONE_ENV`]).
pub(crate) fn take_handed_alone(count: usize) -> Option<(u32, Vec<bool>)> {
    let value = std::env::var(HANDED_ALONE_ENV).ok();
    std::env::remove_var(HANDED_ALONE_ENV);
    let own = (std::process::id(), std::os::unix::process::parent_id());
    parse_handed_alone(&value?, own, count)
}

/// [`take_handed_alone`]'s reading of `value`, for a process whose own and
/// parent's PIDs are `own`.
fn parse_handed_alone(value: &str, own: (u32, u32), count: usize) -> Option<(u32, Vec<bool>)> {
    let mut parts = value.split(':');
    let pid = match parts.next()? {
        "-" => own.0,
        pid => pid.parse().ok()?,
    };
    let parent: u32 = parts.next()?.parse().ok()?;
    let alone: Vec<bool> = parts
        .map(|flag| match flag {
            "1" => Some(true),
            "0" => Some(false),
            _ => None,
        })
        .collect::<Option<_>>()?;
    ((pid, parent) == own && alone.len() == count).then_some((parent, alone))
}

/// One [`mark_shared`] of a listener.
#[derive(Debug)]
pub(crate) struct Marked(u64);

/// Takes back one [`mark_shared`]: the process the listener was handed to
/// is gone (a restart's successor that failed, and was reaped).
pub(crate) fn unmark_shared(marked: Marked) {
    imp::unmark_shared(marked.0);
}

/// Turns one [`mark_shared`] into a mark that lasts while the process
/// `child` holds the listener: a restart's successor, ready and handed
/// over, which this process does not reap (so its PID names no other
/// process while this one runs). Should the successor exit before this
/// process closes the listener, this process's close is the listener's
/// last, and is made as one of its own.
pub(crate) fn mark_held_by_child(marked: Marked, child: u32) {
    imp::mark_held_by_child(marked.0, child);
}

/// Whether the restart's predecessor that handed `listener` here (this
/// process's parent) still holds it: until it has let go, this process
/// must not hand the listener on (see [`mark_shared_while_parent`]).
pub(crate) fn held_by_parent<S: std::os::fd::AsFd>(listener: &S) -> bool {
    imp::held_by_parent(listener.as_fd())
}

/// Whether a listener the server calls `exclusive` is this process's
/// alone as far as it can tell: not recorded by [`mark_shared`], not in an
/// `SO_REUSEPORT` group (on Linux; elsewhere a listener's identity cannot
/// be read, so none is).
pub(crate) fn is_alone<S: std::os::fd::AsFd>(listener: &S, exclusive: bool) -> bool {
    exclusive && !imp::is_shared(listener.as_fd())
}

/// Stops the kernel completing new connections on `listener`, which is about
/// to close, if the server said it is `exclusive` and nothing says it is
/// shared (see the module docs): returns whether it did.
pub(crate) fn stop_handshakes<S: std::os::fd::AsFd>(listener: &S, exclusive: bool) -> bool {
    exclusive && imp::stop_handshakes(listener.as_fd())
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod imp {
    use std::os::fd::BorrowedFd;
    use std::sync::Mutex;

    /// Who else may hold a listener.
    #[derive(Clone, Copy, PartialEq)]
    enum Holder {
        /// Another process, for as long as this one runs (a service
        /// manager, a successor).
        Another,
        /// The process with this PID while it is this one's parent (a
        /// restart's predecessor, which exits after its drain) and holds
        /// the socket.
        Parent(u32),
        /// The process with this PID, a child this one does not reap,
        /// while it holds the socket (a restart's successor).
        Child(u32),
    }

    /// The socket cookies (Linux's unique socket ids) of the listeners
    /// another process may hold, and who.
    static SHARED: Mutex<Vec<(u64, Holder)>> = Mutex::new(Vec::new());

    fn shared() -> std::sync::MutexGuard<'static, Vec<(u64, Holder)>> {
        SHARED.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cookies of the listeners a server declared exclusive.
    static DECLARED: Mutex<Vec<u64>> = Mutex::new(Vec::new());

    pub(super) fn declare(fd: BorrowedFd<'_>) {
        if let Ok(cookie) = socket2::SockRef::from(&fd).cookie() {
            let mut declared = DECLARED.lock().unwrap_or_else(|p| p.into_inner());
            if !declared.contains(&cookie) {
                declared.push(cookie);
            }
        }
    }

    pub(super) fn is_declared(fd: BorrowedFd<'_>) -> bool {
        socket2::SockRef::from(&fd).cookie().is_ok_and(|cookie| {
            let declared = DECLARED.lock().unwrap_or_else(|p| p.into_inner());
            declared.contains(&cookie)
        })
    }

    pub(super) fn mark_shared(fd: BorrowedFd<'_>) -> Option<u64> {
        let cookie = socket2::SockRef::from(&fd).cookie().ok()?;
        shared().push((cookie, Holder::Another));
        Some(cookie)
    }

    pub(super) fn mark_shared_while_parent(fd: BorrowedFd<'_>, parent: u32) {
        // Without its identity a socket counts as shared anyway.
        if let Ok(cookie) = socket2::SockRef::from(&fd).cookie() {
            shared().push((cookie, Holder::Parent(parent)));
        }
    }

    pub(super) fn unmark_shared(cookie: u64) {
        let mut shared = shared();
        if let Some(i) = shared.iter().position(|&m| m == (cookie, Holder::Another)) {
            shared.swap_remove(i);
        }
    }

    pub(super) fn mark_held_by_child(cookie: u64, child: u32) {
        let mut shared = shared();
        if let Some(mark) = shared.iter_mut().find(|m| **m == (cookie, Holder::Another)) {
            mark.1 = Holder::Child(child);
        }
    }

    pub(super) fn held_by_parent(fd: BorrowedFd<'_>) -> bool {
        let Ok(cookie) = socket2::SockRef::from(&fd).cookie() else {
            return false;
        };
        let parents: Vec<u32> = shared()
            .iter()
            .filter_map(|&(c, holder)| match holder {
                Holder::Parent(pid) if c == cookie => Some(pid),
                _ => None,
            })
            .collect();
        parents
            .into_iter()
            .any(|pid| std::os::unix::process::parent_id() == pid && holds(pid, fd))
    }

    pub(super) fn is_shared(fd: BorrowedFd<'_>) -> bool {
        let socket = socket2::SockRef::from(&fd);
        let Ok(cookie) = socket.cookie() else {
            return true;
        };
        // A sibling in an `SO_REUSEPORT` group would take these clients; the
        // kernel moves the queued ones to it (with `tcp_migrate_req`), not a
        // filtered socket's.
        // A predecessor that has exited no longer is this process's parent
        // (this one was reparented), whatever PID it had.
        // Nor does one that has let go of the socket (it closed its
        // listener, its pre-drain over, and drains).
        let held = |&(c, holder): &(u64, Holder)| {
            c == cookie
                && match holder {
                    Holder::Another => true,
                    Holder::Parent(pid) => {
                        std::os::unix::process::parent_id() == pid && holds(pid, fd)
                    }
                    // An exited child, not reaped, holds nothing.
                    Holder::Child(pid) => holds(pid, fd),
                }
        };
        shared().iter().any(held) || socket.reuse_port().unwrap_or(true)
    }

    /// Whether the process `pid` has a descriptor for the socket `fd`, as
    /// its descriptors in `/proc` say (none if there is no such process,
    /// or it has exited); if they cannot be read (another user's process),
    /// it is taken to have one, and so is any process where `/proc` is
    /// missing or another PID namespace's (its numbers name others).
    pub(super) fn holds(pid: u32, fd: BorrowedFd<'_>) -> bool {
        use std::os::fd::AsRawFd;
        let me = std::fs::read_link("/proc/self");
        if !me.is_ok_and(|me| me.as_os_str() == std::process::id().to_string().as_str()) {
            return true;
        }
        // An exited process (a zombie, whose descriptors only root may
        // list) holds nothing.
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat)
                if matches!(
                    stat.rsplit(')').next().map(str::as_bytes),
                    Some([b' ', b'Z' | b'X', ..])
                ) =>
            {
                return false;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            _ => {}
        }
        let Ok(socket) = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) else {
            return true;
        };
        let theirs = match std::fs::read_dir(format!("/proc/{pid}/fd")) {
            Ok(theirs) => theirs,
            // No such process (any more).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return false,
            Err(_) => return true,
        };
        for fd in theirs {
            let Ok(fd) = fd else {
                return true;
            };
            match std::fs::read_link(fd.path()) {
                Ok(held) if held == socket => return true,
                Ok(_) => {}
                // Closed since the listing.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(_) => return true,
            }
        }
        false
    }

    pub(super) fn stop_handshakes(fd: BorrowedFd<'_>) -> bool {
        if is_shared(fd) {
            return false;
        }
        let socket = socket2::SockRef::from(&fd);
        match socket.attach_filter(&super::DROP_SYN) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("cannot stop handshakes on a closing listener: {e}");
                false
            }
        }
    }
}

/// A classic BPF socket filter that drops a TCP segment with the SYN flag
/// and keeps any other whole. A TCP socket's filter sees the segment from
/// its TCP header on, whose byte 13 holds the flags.
#[cfg(any(target_os = "linux", target_os = "android"))]
const DROP_SYN: [socket2::SockFilter; 4] = {
    use socket2::SockFilter;
    const BPF_LD_B_ABS: u16 = 0x30;
    const BPF_JMP_JSET_K: u16 = 0x45;
    const BPF_RET_K: u16 = 0x06;
    const TCP_FLAGS: u32 = 13;
    const SYN: u32 = 0x02;
    [
        SockFilter::new(BPF_LD_B_ABS, 0, 0, TCP_FLAGS),
        // SYN set: the next instruction; otherwise skip it.
        SockFilter::new(BPF_JMP_JSET_K, 0, 1, SYN),
        SockFilter::new(BPF_RET_K, 0, 0, 0),
        SockFilter::new(BPF_RET_K, 0, 0, u32::MAX),
    ]
};

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod imp {
    //! Elsewhere a socket's identity cannot be read: every listener counts
    //! as shared, and nothing is told a successor.
    use std::os::fd::BorrowedFd;

    pub(super) fn mark_shared(_: BorrowedFd<'_>) -> Option<u64> {
        None
    }

    pub(super) fn mark_shared_while_parent(_: BorrowedFd<'_>, _: u32) {}

    pub(super) fn unmark_shared(_: u64) {}

    pub(super) fn mark_held_by_child(_: u64, _: u32) {}

    pub(super) fn held_by_parent(_: BorrowedFd<'_>) -> bool {
        false
    }

    pub(super) fn declare(_: BorrowedFd<'_>) {}

    pub(super) fn is_declared(_: BorrowedFd<'_>) -> bool {
        false
    }

    pub(super) fn is_shared(_: BorrowedFd<'_>) -> bool {
        true
    }

    pub(super) fn stop_handshakes(_: BorrowedFd<'_>) -> bool {
        false
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    fn connects(listener: &TcpListener) -> bool {
        let addr = listener.local_addr().unwrap();
        TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
    }

    #[test]
    fn a_stopped_listener_completes_no_connection_and_keeps_its_queue() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut queued = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert!(stop_handshakes(&listener, true));
        assert!(!connects(&listener), "a handshake completed after the stop");
        // What was queued before the stop is still there to take, and its
        // connection works: the filter is on the listener only.
        let (mut accepted, _) = listener.accept().unwrap();
        accepted.write_all(b"x").unwrap();
        let mut b = [0u8; 1];
        queued.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
    }

    /// Takes a connection from `listener` within `within`.
    fn accept_within(listener: &TcpListener, within: Duration) -> Option<TcpStream> {
        listener.set_nonblocking(true).unwrap();
        let until = Instant::now() + within;
        while Instant::now() < until {
            if let Ok((stream, _)) = listener.accept() {
                stream.set_nonblocking(false).unwrap();
                return Some(stream);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        None
    }

    #[test]
    fn a_handshake_half_done_at_the_stop_completes_and_is_queued() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        // A filter of the test's own that keeps SYNs alone: the client's
        // ACK is lost, so its connect returns while the listener still
        // waits for the handshake's end.
        let syn_only = [
            socket2::SockFilter::new(0x30, 0, 0, 13),
            socket2::SockFilter::new(0x45, 0, 1, 0x02),
            socket2::SockFilter::new(0x06, 0, 0, u32::MAX),
            socket2::SockFilter::new(0x06, 0, 0, 0),
        ];
        socket2::SockRef::from(&listener)
            .attach_filter(&syn_only)
            .unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert!(
            accept_within(&listener, Duration::from_millis(100)).is_none(),
            "the handshake is not half done"
        );
        assert!(stop_handshakes(&listener, true));
        // Its first data carries the ACK, which the stop lets through.
        client.write_all(b"x").unwrap();
        let mut accepted = accept_within(&listener, Duration::from_secs(5))
            .expect("a handshake half done at the stop was never completed");
        let mut b = [0u8; 1];
        accepted.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"x");
        // The connection inherited the listener's filter, and still carries
        // data both ways.
        client.write_all(b"y").unwrap();
        accepted.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"y");
        accepted.write_all(b"z").unwrap();
        client.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"z");
    }

    /// A restart tells its successor which listeners it held alone (a
    /// server declared it exclusive, and nothing marked it shared); the
    /// successor takes the value only if it names it, its parent and as
    /// many listeners as it got.
    #[test]
    fn the_handed_listeners_are_read_as_written_and_only_by_their_successor() {
        let listeners = [
            TcpListener::bind("127.0.0.1:0").unwrap(),
            TcpListener::bind("127.0.0.1:0").unwrap(),
            TcpListener::bind("127.0.0.1:0").unwrap(),
        ];
        declare_exclusive(&listeners[0]);
        declare_exclusive(&listeners[1]);
        mark_shared(&listeners[1]).unwrap();
        let value = handed_alone(listeners.iter());
        let (me, parent) = (std::process::id(), std::process::id() + 1);
        assert_eq!(value, format!("{me}:1:0:0"), "declared and not shared");
        // The successor's shell writes its PID first.
        let successor = (7, me);
        let read = |value: &str, own, count| parse_handed_alone(value, own, count);
        let written = format!("7:{value}");
        assert_eq!(
            read(&written, successor, 3),
            Some((me, vec![true, false, false]))
        );
        assert_eq!(read(&written, (8, me), 3), None, "another process's");
        assert_eq!(read(&written, (7, parent), 3), None, "another parent's");
        assert_eq!(
            read(&written, successor, 2),
            None,
            "another number of listeners"
        );
        for bad in ["", "7", "7:x:1", "7:1:2", "7:1:1:"] {
            assert_eq!(read(bad, (7, 1), 2), None, "{bad:?}");
        }
        assert_eq!(read("7:1", (7, 1), 0), Some((1, vec![])));
        // Started with no shell: the parent is still checked.
        let unnamed = format!("-:{value}");
        assert_eq!(
            read(&unnamed, (9, me), 3),
            Some((me, vec![true, false, false]))
        );
        assert_eq!(read(&unnamed, (9, parent), 3), None, "another parent's");
    }

    /// A listener handed here by a restart is shared while the process
    /// that handed it is this one's parent and holds it, and this
    /// process's alone once it is not or does not; a restart's marks taken
    /// back leave that one. (The end-to-end restart tests have a parent
    /// that holds it.)
    #[test]
    fn a_listener_handed_by_a_parent_is_shared_while_it_is_the_parent() {
        let parent = std::os::unix::process::parent_id();
        let from_parent = TcpListener::bind("127.0.0.1:0").unwrap();
        mark_shared_while_parent(&from_parent, parent);
        assert!(!held_by_parent(&from_parent), "its parent never had it");
        let marked = mark_shared(&from_parent).unwrap();
        assert!(!is_alone(&from_parent, true), "marked shared too");
        unmark_shared(marked);
        // The parent (the test runner) has no descriptor for it.
        assert!(is_alone(&from_parent, true), "its parent let it go");
        // A predecessor that exited: this process was reparented, its
        // parent is another.
        let from_gone = TcpListener::bind("127.0.0.1:0").unwrap();
        mark_shared_while_parent(&from_gone, std::process::id());
        assert!(is_alone(&from_gone, true));
        assert!(!is_alone(&from_gone, false), "not called exclusive");
    }

    /// A listener handed to a child (a restart's successor) is shared
    /// while the child holds it, and this process's alone once the child
    /// has exited, reaped or not.
    #[cfg(feature = "restart")]
    #[test]
    fn a_listener_held_by_a_child_is_shared_until_the_child_exits() {
        use command_fds::{CommandFdExt, FdMapping};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut child = std::process::Command::new("sleep");
        child
            .arg("60")
            .fd_mappings(vec![FdMapping {
                parent_fd: listener.try_clone().unwrap().into(),
                child_fd: 3,
            }])
            .unwrap();
        let mut child = child.spawn().unwrap();
        mark_held_by_child(mark_shared(&listener).unwrap(), child.id());
        assert!(!is_alone(&listener, true), "its child holds it");
        child.kill().unwrap();
        // Not reaped yet: a zombie.
        let stat = format!("/proc/{}/stat", child.id());
        let until = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&stat)
            .unwrap()
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.starts_with(" Z"))
        {
            assert!(Instant::now() < until, "the child never exited");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(is_alone(&listener, true), "an exited child holds nothing");
        child.wait().unwrap();
        assert!(is_alone(&listener, true));
    }

    /// The check above as a process without privileges, to which an
    /// exited child's descriptors cannot be listed: run by the test below
    /// (as nobody, if it runs as root).
    #[cfg(feature = "restart")]
    #[test]
    #[ignore = "run by an_exited_child_holds_nothing_to_an_unprivileged_process"]
    fn unprivileged_exited_child_holds_nothing() {
        let Some(dropped) = std::env::var_os("GRACEFUL_TEST_UNPRIVILEGED") else {
            return;
        };
        a_listener_held_by_a_child_is_shared_until_the_child_exits();
        // Root's live process 1, whose descriptors nobody may list, is
        // taken to hold the socket.
        if dropped == "from root" {
            use std::os::fd::AsFd;
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            assert!(std::fs::read_dir("/proc/1/fd").is_err());
            assert!(imp::holds(1, listener.as_fd()), "unreadable descriptors");
        }
    }

    /// An exited child, not yet reaped, holds nothing, also to a process
    /// that may not list its descriptors (a service not run as root).
    #[cfg(feature = "restart")]
    #[test]
    fn an_exited_child_holds_nothing_to_an_unprivileged_process() {
        use std::os::unix::process::CommandExt;
        let mut helper = std::process::Command::new(std::env::current_exe().unwrap());
        helper
            .args(["server::handshakes::tests::unprivileged_exited_child_holds_nothing"])
            .args(["--exact", "--ignored", "--quiet"])
            .env("GRACEFUL_TEST_UNPRIVILEGED", "1");
        // /proc/self belongs to the process's user.
        use std::os::unix::fs::MetadataExt;
        let root = |path: &str| std::fs::metadata(path).is_ok_and(|m| m.uid() == 0);
        if root("/proc/self") {
            helper.uid(65534).gid(65534);
            if root("/proc/1") {
                helper.env("GRACEFUL_TEST_UNPRIVILEGED", "from root");
            }
        }
        let out = helper.output().unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}: {said}", out.status);
        assert!(said.contains("1 passed"), "the check did not run: {said}");
    }

    /// A process holds a socket while it has a descriptor for it; one
    /// that does not exist holds none.
    #[test]
    fn a_process_holds_a_socket_while_it_has_a_descriptor_for_it() {
        use std::os::fd::AsFd;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(imp::holds(std::process::id(), listener.as_fd()));
        let mut other = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let held = imp::holds(other.id(), listener.as_fd());
        let _ = other.kill();
        let _ = other.wait();
        assert!(!held, "a process without it");
        assert!(!imp::holds(u32::MAX, listener.as_fd()), "no such process");
    }

    #[test]
    fn a_client_caught_by_the_stop_is_refused_once_the_listener_closed() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        assert!(stop_handshakes(&listener, true));
        let client = std::thread::spawn(move || {
            let start = Instant::now();
            (
                TcpStream::connect_timeout(&addr, Duration::from_secs(10)),
                start.elapsed(),
            )
        });
        std::thread::sleep(Duration::from_millis(200));
        drop(listener);
        let (connected, took) = client.join().unwrap();
        let e = connected.expect_err("connected to a closed listener");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
        assert!(took < Duration::from_secs(5), "refused only after {took:?}");
    }

    #[test]
    fn a_listener_not_exclusive_shared_or_in_a_reuseport_group_is_left_alone() {
        let not_exclusive = TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(!stop_handshakes(&not_exclusive, false));
        assert!(connects(&not_exclusive));

        let shared = TcpListener::bind("127.0.0.1:0").unwrap();
        mark_shared(&shared);
        assert!(!stop_handshakes(&shared, true));
        assert!(connects(&shared));

        let grouped =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        grouped.set_reuse_port(true).unwrap();
        grouped
            .bind(
                &"127.0.0.1:0"
                    .parse::<std::net::SocketAddr>()
                    .unwrap()
                    .into(),
            )
            .unwrap();
        grouped.listen(16).unwrap();
        let grouped = TcpListener::from(grouped);
        assert!(!stop_handshakes(&grouped, true));
        assert!(connects(&grouped));
    }
}
