//! Proof that user code written against the contract compiles and behaves
//! the same on every adapter: an echo server, a client, an in-flight
//! request across the trigger, an idle connection closed at it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use futures::io::BufReader as AsyncBufReader;
use futures::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use rt::{Conn, Reason, ServeConfig, Shutdown};

async fn echo(stream: rt::Stream, _conn: Conn, runtime: rt::Runtime) -> std::io::Result<()> {
    let (r, mut w) = stream.split();
    let mut r = AsyncBufReader::new(r);
    let mut line = String::new();
    while r.read_line(&mut line).await? > 0 {
        if line.starts_with("slow") {
            runtime.sleep(Duration::from_millis(300)).await;
        }
        w.write_all(line.as_bytes()).await?;
        line.clear();
    }
    Ok(())
}

fn main() {
    let adapter = std::any::type_name::<rt::Runtime>();
    let runtime = rt::Runtime::new().expect("runtime");
    let shutdown = Shutdown::new();
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();

    let client = {
        let shutdown = shutdown.clone();
        std::thread::spawn(move || {
            let mut idle = TcpStream::connect(addr).unwrap();
            idle.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            let mut busy = TcpStream::connect(addr).unwrap();
            busy.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            idle.write_all(b"ping\n").unwrap();
            let mut line = String::new();
            BufReader::new(&idle).read_line(&mut line).unwrap();
            assert_eq!(line, "ping\n");
            busy.write_all(b"slow pong\n").unwrap();
            std::thread::sleep(Duration::from_millis(50));

            let t0 = Instant::now();
            shutdown.trigger(Reason::requested());
            let mut rest = Vec::new();
            idle.read_to_end(&mut rest).unwrap();
            assert!(rest.is_empty());
            assert!(t0.elapsed() < Duration::from_millis(300), "idle close took {:?}", t0.elapsed());
            let mut answer = String::new();
            (&busy).read_to_string(&mut answer).unwrap();
            assert_eq!(answer, "slow pong\n", "the in-flight line is answered in full");
            assert!(TcpStream::connect(addr).is_err(), "the listener is closed");
        })
    };

    let handler_rt = runtime.clone();
    let outcome = runtime
        .block_on(rt::serve(listener, &shutdown, ServeConfig::default(), move |s, c| {
            echo(s, c, handler_rt.clone())
        }))
        .expect("serve");
    client.join().expect("client assertions");
    assert!(outcome.is_drained(), "{outcome}");
    assert_eq!(outcome.exit_code(), 0);
    println!("swap fixture passed on {adapter}: {outcome}");
}
