//! A blocking HTTP/2 (prior knowledge) client of raw frames, as little as
//! the scenarios need: `GET` requests without a body, `POST` requests
//! whose body is begun and not ended, their
//! responses' first header byte and body, GOAWAY, and the connection's end.
//! It answers the server's SETTINGS and PINGs as it reads (a graceful
//! GOAWAY waits for a PING's answer before it names the last stream).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::harness::{is_timeout, PATIENCE};

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// One stream's response as read so far.
#[derive(Debug, Default, Clone)]
pub(crate) struct Response {
    /// The first byte of its header block: `0x88` is `:status: 200`.
    pub(crate) first_header_byte: Option<u8>,
    pub(crate) body: String,
    pub(crate) ended: bool,
    pub(crate) reset: bool,
}

pub(crate) struct H2 {
    stream: TcpStream,
    /// Bytes read and not yet taken as a frame.
    read: Vec<u8>,
    next_id: u32,
    responses: HashMap<u32, Response>,
    /// The last stream id of each GOAWAY received, in order.
    pub(crate) goaways: Vec<u32>,
    /// The server closed (or reset) the connection.
    pub(crate) ended: bool,
    /// Whether it answers PINGs (a client gone quiet does not).
    pub(crate) answers_pings: bool,
    /// How many answers to its own PINGs it read.
    pongs: usize,
}

/// The bytes of a DATA frame of stream `id` that ends its body.
pub(crate) fn last_data(id: u32, payload: &[u8]) -> Vec<u8> {
    frame(DATA, END_STREAM, id, payload)
}

fn frame(kind: u8, flags: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut frame = Vec::with_capacity(9 + payload.len());
    frame.extend_from_slice(&len.to_be_bytes()[1..]);
    frame.push(kind);
    frame.push(flags);
    frame.extend_from_slice(&id.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

impl H2 {
    /// Connects, sends the preface and empty SETTINGS.
    pub(crate) fn connect(addr: SocketAddr) -> H2 {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .unwrap();
        let mut h2 = H2 {
            stream,
            read: Vec::new(),
            next_id: 1,
            responses: HashMap::new(),
            goaways: Vec::new(),
            ended: false,
            answers_pings: true,
            pongs: 0,
        };
        h2.frame(SETTINGS, 0, 0, &[]);
        h2
    }

    fn frame(&mut self, kind: u8, flags: u8, id: u32, payload: &[u8]) {
        // A server that closed may reset the write: its end is read later.
        let _ = self.stream.write_all(&frame(kind, flags, id, payload));
    }

    /// Sends `GET path` on a new stream; returns its id.
    pub(crate) fn get(&mut self, path: &str) -> u32 {
        self.request(0x82, path, END_STREAM)
    }

    /// Sends `POST path` on a new stream and `part` of its body, leaving
    /// the body unended; returns its id.
    pub(crate) fn post_begun(&mut self, path: &str, part: &[u8]) -> u32 {
        let id = self.request(0x83, path, 0);
        self.frame(DATA, 0, id, part);
        id
    }

    /// Sends a request's headers, `method` an HPACK index.
    fn request(&mut self, method: u8, path: &str, end: u8) -> u32 {
        assert!(path.len() < 127);
        let id = self.next_id;
        self.next_id += 2;
        // HPACK: `:method` and `:scheme: http` from the static table,
        // `:path` and `:authority` as literals not indexed.
        let mut block = vec![method, 0x86, 0x04, path.len() as u8];
        block.extend_from_slice(path.as_bytes());
        block.extend_from_slice(&[0x01, 0x01, b't']);
        self.frame(HEADERS, END_HEADERS | end, id, &block);
        self.responses.insert(id, Response::default());
        id
    }

    /// The connection's socket.
    pub(crate) fn socket(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// The response of stream `id` as read so far.
    pub(crate) fn response(&self, id: u32) -> Response {
        self.responses.get(&id).cloned().unwrap_or_default()
    }

    /// Reads one frame (answering SETTINGS and PINGs) within `within`;
    /// false if none came whole in time or the connection ended.
    fn read_frame(&mut self, within: Duration) -> bool {
        let until = Instant::now() + within;
        let len = loop {
            if self.read.len() >= 9 {
                let len = u32::from_be_bytes([0, self.read[0], self.read[1], self.read[2]]);
                if self.read.len() >= 9 + len as usize {
                    break len as usize;
                }
            }
            let left = until.saturating_duration_since(Instant::now());
            if self.ended || left.is_zero() {
                return false;
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf) {
                Ok(0) => self.ended = true,
                Ok(n) => self.read.extend_from_slice(&buf[..n]),
                Err(e) if is_timeout(&e) => {}
                Err(_) => self.ended = true,
            }
        };
        let frame: Vec<u8> = self.read.drain(..9 + len).collect();
        let (kind, flags) = (frame[3], frame[4]);
        let id = u32::from_be_bytes([frame[5], frame[6], frame[7], frame[8]]) & 0x7fff_ffff;
        let payload = &frame[9..];
        match kind {
            SETTINGS if flags & ACK == 0 => self.frame(SETTINGS, ACK, 0, &[]),
            PING if flags & ACK == 0 && self.answers_pings => self.frame(PING, ACK, 0, payload),
            PING if flags & ACK != 0 => self.pongs += 1,
            GOAWAY => {
                let last = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                self.goaways.push(last & 0x7fff_ffff);
            }
            HEADERS | DATA | RST_STREAM => {
                let response = self.responses.entry(id).or_default();
                match kind {
                    HEADERS => {
                        response.first_header_byte.get_or_insert(payload[0]);
                    }
                    DATA => response.body.push_str(&String::from_utf8_lossy(payload)),
                    _ => response.reset = true,
                }
                if kind != RST_STREAM && flags & END_STREAM != 0 {
                    response.ended = true;
                }
            }
            _ => {}
        }
        true
    }

    /// Reads frames until `done` holds or `within` passes; whether it holds.
    pub(crate) fn read_until(
        &mut self,
        within: Duration,
        mut done: impl FnMut(&H2) -> bool,
    ) -> bool {
        let until = Instant::now() + within;
        loop {
            if done(self) {
                return true;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() || self.ended {
                return done(self);
            }
            self.read_frame(left.min(Duration::from_millis(100)));
        }
    }

    /// Opens the flow-control window of stream `id` (0: the connection's)
    /// by `increment` bytes.
    pub(crate) fn window_update(&mut self, id: u32, increment: u32) {
        self.frame(WINDOW_UPDATE, 0, id, &increment.to_be_bytes());
    }

    /// Sends a PING and reads until its answer: the server has read all
    /// the client sent before it.
    pub(crate) fn sync(&mut self) {
        let pongs = self.pongs;
        self.frame(PING, 0, 0, &[0; 8]);
        assert!(
            self.read_until(PATIENCE, |h2| h2.pongs > pongs),
            "no answer to a PING"
        );
    }

    /// Reads until the server ends the connection, within `within`.
    pub(crate) fn closed_within(&mut self, within: Duration) -> bool {
        self.read_until(within, |h2| h2.ended)
    }

    /// Reads until stream `id` ended, within `within`; its response.
    pub(crate) fn finish(&mut self, id: u32, within: Duration) -> Response {
        self.read_until(within, |h2| {
            h2.responses.get(&id).is_some_and(|r| r.ended || r.reset)
        });
        self.response(id)
    }
}
