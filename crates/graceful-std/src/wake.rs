use std::io;
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::time::Duration;

use socket2::{Domain, Socket, Type};

/// Connects to `target` from a port chosen before connecting, which is
/// written to `slot` first: the accept thread can then recognise this
/// connection (it only wakes a blocked `accept`) and never serve it.
pub(crate) fn connect_from_known_port(
    target: SocketAddr,
    slot: &Mutex<Option<SocketAddr>>,
) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(target), Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(target.ip(), 0).into())?;
    let from = socket
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("not an inet socket"))?;
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(from);
    socket.connect_timeout(&target.into(), Duration::from_secs(1))?;
    Ok(socket.into())
}
