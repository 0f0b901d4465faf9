//! The smallest complete service on graceful-tokio, to copy: an HTTP
//! server whose requests take a second, stopped by SIGTERM or Ctrl+C.
//!
//! ```text
//! cargo run --example tokio_minimal      # listens on 127.0.0.1:8080 (or the address given)
//! curl localhost:8080/ & sleep 0.3; kill -TERM <pid>  # curl still gets "hello"
//! ```
//!
//! The first signal stops accepting, lets requests in flight finish and
//! exits 0; after 30 s what is left is cut and the exit code is 1; a second
//! signal cuts at once and exits 128+signo.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use graceful_tokio as rt;
use http_body_util::Full;
use hyper::{Request, Response};
use rt::{ServeConfig, Shutdown, SignalConfig};

fn main() -> std::io::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .init();
    let addr = std::env::args().nth(1).unwrap_or("127.0.0.1:8080".into());
    let listener = std::net::TcpListener::bind(addr)?;
    let runtime = rt::Runtime::new()?;
    let shutdown = Shutdown::new();
    rt::signals(&shutdown, SignalConfig::default())?;
    println!("listening on {}", listener.local_addr()?);
    let config = ServeConfig::default().timeout(Duration::from_secs(30));
    let sleeper = runtime.clone();
    let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
        let sleeper = sleeper.clone();
        async move {
            tracing::info!("{} {}", req.method(), req.uri());
            sleeper.sleep(Duration::from_secs(1)).await; // the work
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::from("hello\n")))
        }
    });
    let outcome = runtime.block_on(rt::http::serve(listener, &shutdown, config, service))?;
    std::process::exit(outcome.exit_code());
}
