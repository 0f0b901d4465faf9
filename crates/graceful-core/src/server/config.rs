use std::time::Duration;

/// How a server stops: the deadline, the pre-drain delay, and the grace
/// periods. The same type configures every adapter's `serve` and
/// `http::serve`.
///
/// ```
/// use std::time::Duration;
/// use graceful_core::ServeConfig;
///
/// let config = ServeConfig::default()
///     .timeout(Duration::from_secs(20))
///     .pre_drain(Duration::from_secs(5));
/// assert_eq!(config.timeout, Duration::from_secs(20));
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeConfig {
    /// How long in-flight work may take once the listeners closed, before it
    /// is forced (default 30 s).
    pub timeout: Duration,
    /// How long to keep accepting and serving after the trigger, so that load
    /// balancers see the readiness change before the listeners close
    /// (default 0).
    pub pre_drain: Duration,
    /// How long a connection that has not sent a request when its server
    /// winds it down (accepted but silent, during the pre-drain delay, or
    /// from the backlog at close) may take to send its first request, which
    /// is then served to its end however long it takes (default 1 s). HTTP:
    /// one whose first request's head is not all there when the grace ends
    /// is closed then; an idle HTTP/2 connection whose client sends nothing
    /// at all after its GOAWAY (not even the answer to the PING sent with
    /// it) is closed this long after the GOAWAY (bytes it sent before that
    /// the server reads only after it count as heard: such a client is
    /// left to the deadline, never cut while it may be alive). TCP: the
    /// reads of connections accepted after the trigger end this long after
    /// the listener closed, rather than when it closes.
    pub first_request_grace: Duration,
    /// HTTP: after the last response, when the client may still be sending
    /// (request bytes pending; HTTP/1: a request's head or body not all
    /// read, requests read but not answered, or a client that pipelines;
    /// HTTP/2: a request that came with a body), how long at most to read
    /// and discard what it sends before closing, so it gets its response
    /// rather than a reset (default 500 ms). Otherwise the connection
    /// closes at once.
    pub linger: Duration,
    /// How often to log progress while draining (default 1 s; `None`:
    /// never).
    pub progress_every: Option<Duration>,
    /// After forcing, how long to wait for forced work to end before giving
    /// up on it (default 500 ms).
    pub settle: Duration,
    /// TCP: when the listener closes (at the trigger, or after the
    /// pre-drain delay), end the reads of every connection, so that a
    /// handler waiting for input reads end-of-stream and a handler busy with
    /// a request finishes it, then reads end-of-stream (default true). A
    /// connection whose handler told it idle (an adapter stream's `idle`)
    /// is shut down both ways then, whatever this says, unless it was
    /// accepted after the trigger (its first-request grace is its own) or
    /// bytes wait in its socket.
    pub close_idle: bool,
    /// At most this many connections at once while serving; when full,
    /// accepting waits (accepted connections are never dropped). At the
    /// close, the connections already queued in the backlog are still
    /// taken and served, past the limit if need be (their clients already
    /// sent their requests, B4), within the backlog's own bounds (at most
    /// 4096 connections, 200 ms and 16 failed accepts a look, while
    /// descriptors last). Default: no limit. A 0 set on this field is
    /// taken as 1 (the setter refuses it).
    pub max_connections: Option<usize>,
    /// The server's name in logs and reports (default: `server ADDR`).
    pub name: Option<String>,
    /// The listening socket is this process's alone: bound here, not
    /// inherited from systemd or another process, not part of an
    /// `SO_REUSEPORT` group (default false). Then, on Linux, just before its
    /// last accept the server asks the kernel to start no more handshakes
    /// on it and takes those already started (looking again 2 ms later,
    /// until a look finds none), so the close resets no connection whose
    /// client saw it open, unless its handshake's last packet took longer
    /// than that; a client connecting after that instant is refused on its
    /// SYN's retransmission (about a second later) instead. This attaches a
    /// socket filter that stays on the socket: never set it for a socket
    /// another process may still hold (systemd's socket units keep theirs
    /// and would never see a connection again). Sockets taken through
    /// [`systemd::activated_listeners`](crate::systemd::activated_listeners),
    /// and sockets handed to a successor by a restart (while it holds
    /// them), are left alone anyway (on Linux; elsewhere a socket's
    /// identity cannot be read, and every listener is left alone). In a
    /// restart's successor, a socket that its predecessor served with this
    /// set, and held alone, is left alone only while the predecessor holds
    /// it, then (once the predecessor closed it, its pre-drain over, or
    /// exited) closed as this process's own. It also says what happens to the
    /// connections still queued when the server runs out of descriptors
    /// while taking its backlog at close: on such a listener they are
    /// accepted and closed at once, to be counted in the log (its close
    /// would reset them anyway); on any other they are left in the queue,
    /// for another holder of the socket to serve.
    pub exclusive_listener: bool,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            timeout: Duration::from_secs(30),
            pre_drain: Duration::ZERO,
            first_request_grace: Duration::from_secs(1),
            linger: Duration::from_millis(500),
            progress_every: Some(Duration::from_secs(1)),
            settle: Duration::from_millis(500),
            close_idle: true,
            max_connections: None,
            name: None,
            exclusive_listener: false,
        }
    }
}

impl ServeConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets [`timeout`](Self::timeout).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets [`pre_drain`](Self::pre_drain).
    pub fn pre_drain(mut self, pre_drain: Duration) -> Self {
        self.pre_drain = pre_drain;
        self
    }

    /// Sets [`first_request_grace`](Self::first_request_grace).
    pub fn first_request_grace(mut self, grace: Duration) -> Self {
        self.first_request_grace = grace;
        self
    }

    /// Sets [`linger`](Self::linger).
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Sets [`progress_every`](Self::progress_every).
    pub fn progress_every(mut self, every: Option<Duration>) -> Self {
        self.progress_every = every;
        self
    }

    /// Sets [`settle`](Self::settle).
    pub fn settle(mut self, settle: Duration) -> Self {
        self.settle = settle;
        self
    }

    /// Sets [`exclusive_listener`](Self::exclusive_listener).
    pub fn exclusive_listener(mut self, exclusive: bool) -> Self {
        self.exclusive_listener = exclusive;
        self
    }

    /// Sets [`close_idle`](Self::close_idle).
    pub fn close_idle(mut self, close_idle: bool) -> Self {
        self.close_idle = close_idle;
        self
    }

    /// Sets [`max_connections`](Self::max_connections).
    ///
    /// # Panics
    ///
    /// If `max` is `Some(0)`: a server that may hold no connection would
    /// accept none.
    pub fn max_connections(mut self, max: Option<usize>) -> Self {
        assert!(max != Some(0), "max_connections must be at least 1");
        self.max_connections = max;
        self
    }

    /// Sets [`name`](Self::name).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The defaults the field docs state.
    #[test]
    fn the_defaults_are_as_documented() {
        let c = ServeConfig::default();
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.pre_drain, Duration::ZERO);
        assert_eq!(c.first_request_grace, Duration::from_secs(1));
        assert_eq!(c.linger, Duration::from_millis(500));
        assert_eq!(c.progress_every, Some(Duration::from_secs(1)));
        assert_eq!(c.settle, Duration::from_millis(500));
        assert!(c.close_idle);
        assert_eq!(c.max_connections, None);
        assert_eq!(c.name, None);
        assert!(
            !c.exclusive_listener,
            "a filter on a socket others may hold"
        );
    }

    #[test]
    #[should_panic(expected = "max_connections must be at least 1")]
    fn a_limit_of_no_connection_is_refused() {
        let _ = ServeConfig::default().max_connections(Some(0));
    }
}
