//! The live-connection registry on real loopback sockets.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Connections;
use crate::{ForceCause, Reason, Shutdown};

/// A client and the server's side of its connection, shared as a server
/// shares it with its registry.
fn pair(listener: &TcpListener) -> (TcpStream, Arc<TcpStream>) {
    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (server, _) = listener.accept().unwrap();
    (client, Arc::new(server))
}

/// A listener, and a registry attached to a shutdown, as a server has.
fn registry() -> (TcpListener, Shutdown, Arc<Connections>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let shutdown = Shutdown::new();
    let conns = Connections::new();
    conns.attach(&shutdown);
    (listener, shutdown, conns)
}

/// A client of `listener` and the server's side, registered in `conns`
/// under `shutdown`.
fn registered(
    listener: &TcpListener,
    shutdown: &Shutdown,
    conns: &Arc<Connections>,
) -> (TcpStream, (super::ConnTrack, Arc<TcpStream>)) {
    let (client, server) = pair(listener);
    let peer = client.local_addr().unwrap();
    let track = conns.register(shutdown, server.clone(), peer, "conn");
    (client, (track, server))
}

#[test]
fn ending_reads_ends_blocked_reads_but_keeps_received_data_and_writes() {
    let (listener, shutdown, conns) = registry();

    let (mut idle_client, idle) = pair(&listener);
    let idle_track = conns.register(
        &shutdown,
        idle.clone(),
        idle_client.local_addr().unwrap(),
        "conn",
    );
    let (mut busy_client, busy) = pair(&listener);
    let busy_track = conns.register(
        &shutdown,
        busy.clone(),
        busy_client.local_addr().unwrap(),
        "conn",
    );
    assert_eq!(conns.len(), 2);
    assert_eq!(shutdown.held(), 2);
    busy_client.write_all(b"request\n").unwrap();

    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        let n = (&*idle).read(&mut buf).unwrap();
        (n, Instant::now())
    });
    std::thread::sleep(Duration::from_millis(50));
    let triggered = Instant::now();
    shutdown.trigger(Reason::requested());
    // What a server does when its listener closes.
    conns.shutdown_reads();
    let (n, woke) = reader.join().unwrap();
    assert_eq!(n, 0, "an idle read ends with end-of-stream");
    assert!(woke.duration_since(triggered) < Duration::from_millis(100));

    // Data received before the trigger is still read; then end-of-stream.
    let mut buf = [0u8; 16];
    let n = (&*busy).read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"request\n");
    assert_eq!((&*busy).read(&mut buf).unwrap(), 0);
    // The write half still works: the response gets out.
    (&*busy).write_all(b"response\n").unwrap();
    let mut got = [0u8; 9];
    busy_client.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"response\n");

    drop(busy_track);
    drop(idle_track);
    assert_eq!(conns.len(), 0);
    assert!(shutdown.is_drained());
    let _ = idle_client.write_all(b"x");
}

#[test]
fn connections_registered_after_the_trigger_are_late_and_force_cuts_all() {
    let (listener, shutdown, conns) = registry();
    let _keep = shutdown.guard();
    shutdown.trigger(Reason::requested());

    // Late: its reads are not ended with the others, so a request still on
    // its way is not lost; the server ends them after the grace.
    let (mut client, late) = pair(&listener);
    let _track = conns.register(
        &shutdown,
        late.clone(),
        client.local_addr().unwrap(),
        "conn",
    );
    conns.shutdown_reads();
    client.write_all(b"req\n").unwrap();
    let mut buf = [0u8; 4];
    (&*late).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"req\n");
    conns.shutdown_late_reads();
    assert_eq!((&*late).read(&mut buf).unwrap(), 0);

    shutdown.force(ForceCause::Deadline);
    client
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    assert_eq!(
        client.read(&mut buf).unwrap(),
        0,
        "the peer sees the connection end"
    );
    assert!((&*late).write_all(b"late").is_err() || (&*late).write_all(b"late").is_err());
}

#[test]
fn below_waits_for_a_connection_to_end() {
    use futures_util::FutureExt;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let shutdown = Shutdown::new();
    let conns = Connections::new();
    let (c, s) = pair(&listener);
    let track = conns.register(&shutdown, s.clone(), c.local_addr().unwrap(), "conn");
    assert!(conns.below(1).now_or_never().is_none(), "no room yet");
    assert!(conns.below(2).now_or_never().is_some());
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(30));
        drop(track);
    });
    crate::block_on(conns.below(1));
    assert_eq!(conns.len(), 0);
    t.join().unwrap();
}

#[test]
fn a_connection_registered_during_the_trigger_is_late_and_keeps_its_reads() {
    // The window: the trigger bit is set, the read-ending hook has not run
    // yet. A hook registered before `attach` runs exactly there.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let shutdown = Shutdown::new();
    let conns = Connections::new();
    let (mut client, server_side) = pair(&listener);
    let peer = client.local_addr().unwrap();
    let registered = std::sync::Arc::new(std::sync::Mutex::new(None));
    {
        let (conns, shutdown, registered) = (conns.clone(), shutdown.clone(), registered.clone());
        let socket = server_side.clone();
        shutdown.clone().on_triggered(move |_| {
            let track = conns.register(&shutdown, socket.clone(), peer, "conn");
            *registered.lock().unwrap() = Some(track);
        });
    }
    conns.attach(&shutdown);
    shutdown.trigger(Reason::requested());
    conns.shutdown_reads();
    let track = registered.lock().unwrap().take().unwrap();
    let _track = track;
    // Its request arrives a moment later and is still read.
    client.write_all(b"late request\n").unwrap();
    let mut buf = [0u8; 13];
    (&*server_side).read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"late request\n");
}

/// A socket that logs its shutdowns and its close, and ends its own
/// connection when its read is ended, as a handler does.
struct Logged {
    id: usize,
    log: Arc<std::sync::Mutex<Vec<String>>>,
    track: std::sync::Mutex<Option<super::ConnTrack>>,
}

impl super::SharedSocket for Logged {
    fn shutdown(&self, _how: std::net::Shutdown) -> std::io::Result<()> {
        self.log
            .lock()
            .unwrap()
            .push(format!("shutdown {}", self.id));
        drop(self.track.lock().unwrap().take());
        Ok(())
    }
}

impl Drop for Logged {
    fn drop(&mut self) {
        self.log.lock().unwrap().push(format!("closed {}", self.id));
    }
}

#[test]
fn a_connection_that_ends_as_reads_are_ended_closes_before_the_next_is_shut_down() {
    let shutdown = Shutdown::new();
    let conns = Connections::new();
    conns.attach(&shutdown);
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let peer = "127.0.0.1:1".parse().unwrap();
    for id in [1, 2] {
        let socket = Arc::new(Logged {
            id,
            log: log.clone(),
            track: std::sync::Mutex::new(None),
        });
        let track = conns.register(&shutdown, socket.clone(), peer, "conn");
        *socket.track.lock().unwrap() = Some(track);
        // The handler's own reference is gone: the registry's is the last.
    }
    conns.shutdown_reads();
    // The first closes (its peer sees the end) before the second is even
    // shut down, not after the last of all.
    let log = log.lock().unwrap().clone();
    assert_eq!(log, ["shutdown 1", "closed 1", "shutdown 2", "closed 2"]);
    assert_eq!(conns.len(), 0);
    assert_eq!(shutdown.held(), 0);
}

#[test]
fn pending_input_is_peeked_without_blocking_or_taking_it() {
    use super::SharedSocket;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let (mut client, server) = pair(&listener);
    // A blocking socket: the peek must not wait.
    assert!(!server.has_pending_input(), "nothing was sent");
    client.write_all(b"GET").unwrap();
    let start = Instant::now();
    while !server.has_pending_input() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the bytes never showed"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(server.has_pending_input(), "the peek took the bytes");
    let mut got = [0u8; 3];
    (&*server).read_exact(&mut got).unwrap();
    assert_eq!(&got, b"GET");
    assert!(!server.has_pending_input(), "all was read");
    // The client's end of stream, once it arrived (a read sees it and
    // takes nothing), is no input.
    client.shutdown(std::net::Shutdown::Write).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!((&*server).read(&mut got).unwrap(), 0, "no end of stream");
    assert!(
        !server.has_pending_input(),
        "end of stream counted as input"
    );
}

#[test]
fn only_idle_connections_with_nothing_sent_are_closed_at_once_and_not_late_ones() {
    let (listener, shutdown, conns) = registry();
    let register = |shutdown: &Shutdown| registered(&listener, shutdown, &conns);
    // 0: idle. 1: idle, its client sent a request since. 2: never told
    // idle. 3: idle, then a read took bytes.
    let (mut clients, mut tracks): (Vec<_>, Vec<_>) = (0..4).map(|_| register(&shutdown)).unzip();
    let idle: Vec<_> = tracks.iter().map(|(t, _)| t.idle().clone()).collect();
    for i in [0, 1, 3] {
        idle[i].set_idle();
    }
    let took = idle[3].read(|| std::task::Poll::Ready(Ok(1)));
    assert!(matches!(took, std::task::Poll::Ready(Ok(1))));
    clients[1].write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    arrived(&tracks[1].1);
    shutdown.trigger(Reason::requested());
    // 4: accepted after the trigger, told idle: its grace is its task's.
    let (late_client, late_track) = register(&shutdown);
    let late = late_track.0.idle().clone();
    late.set_idle();
    clients.push(late_client);
    tracks.push(late_track);
    assert_eq!(conns.close_idle(), 1);
    assert!(idle[0].is_closed());
    let read = idle[0].read(|| unreachable!("read after the close"));
    assert!(matches!(read, std::task::Poll::Ready(Ok(0))));
    for (i, client) in clients.iter_mut().enumerate() {
        client
            .set_read_timeout(Some(Duration::from_millis(if i == 0 {
                10_000
            } else {
                50
            })))
            .unwrap();
        let mut buf = [0u8; 1];
        match client.read(&mut buf) {
            Ok(0) => assert_eq!(i, 0, "connection {i} was closed"),
            Ok(_) => panic!("connection {i} got bytes"),
            Err(e) => {
                assert_ne!(i, 0, "the idle connection was not closed: {e}");
                assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{i}: {e}");
            }
        }
    }
    assert!(!idle[1].is_closed() && !idle[2].is_closed() && !idle[3].is_closed());
    assert!(!late.is_closed());
    drop(tracks);
    assert_eq!(conns.len(), 0);
}

/// Waits until bytes the client sent wait unread in `server`.
fn arrived(server: &TcpStream) {
    use super::SharedSocket;
    let sent = Instant::now();
    while !server.has_pending_input() {
        assert!(sent.elapsed() < Duration::from_secs(10), "never arrived");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Enough idle connections to be shut down on two threads: every one is,
/// and none with bytes waiting.
#[test]
fn many_idle_connections_are_all_shut_down_on_two_threads() {
    let (listener, shutdown, conns) = registry();
    let n = super::SPLIT_AT + 44;
    let (mut clients, tracks): (Vec<_>, Vec<_>) = (0..n)
        .map(|_| {
            let (client, (track, server)) = registered(&listener, &shutdown, &conns);
            track.idle().set_idle();
            (client, (track, server))
        })
        .unzip();
    // One in each half has a request waiting.
    let busy = [1, n - 2];
    for i in busy {
        clients[i].write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    }
    for i in busy {
        arrived(&tracks[i].1);
    }
    shutdown.trigger(Reason::requested());
    assert_eq!(conns.close_idle(), n - busy.len());
    for (i, (client, (track, _))) in clients.iter_mut().zip(&tracks).enumerate() {
        assert_eq!(
            track.idle().is_closed(),
            !busy.contains(&i),
            "connection {i}"
        );
        if !busy.contains(&i) {
            client
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            assert_eq!(client.read(&mut [0u8; 1]).unwrap(), 0, "connection {i}");
        }
    }
}
