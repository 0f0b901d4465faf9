//! Where the HTTP/1 requests a connection reads end, followed from the bytes
//! alone, as hyper frames them: a head (parsed with httparse, hyper's own
//! parser), then a body by `Transfer-Encoding: chunked` or
//! `Content-Length`, or none.
//!
//! The close needs it (B12): when everything read so far ends on the end of
//! a request, the client has sent all it meant to and closing at once
//! cannot reset its response; when a request's body is not all read, the
//! client may still be sending it, and the close lingers. hyper tells
//! neither, and the handler owns the request body.
//!
//! Where this and hyper could differ, this errs towards lingering: a head
//! it cannot parse, or one longer than it keeps, loses it for good; limits
//! hyper sets and this does not (the largest `Content-Length`, the size of
//! chunk extensions and trailers) make hyper end the connection while this
//! still follows a body.

/// hyper's default limit on a head's headers.
const MAX_HEADERS: usize = 100;
/// A head longer than this is not followed (hyper's own limit is larger,
/// but such heads are rare; the close then lingers, as when in doubt).
const MAX_HEAD: usize = 64 << 10;

/// Follows the framing of the requests read on one HTTP/1 connection.
#[derive(Debug, Default)]
pub(crate) struct Framing {
    state: State,
    /// The bytes of a head not complete yet (empty between requests).
    head: Vec<u8>,
    /// A CR was read where an empty line may begin, between requests
    /// (httparse wants its LF next).
    cr: bool,
    /// How many heads were read whole.
    heads: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between requests, or in a head whose bytes so far are in `head`.
    #[default]
    Head,
    /// In a body with a `Content-Length`: this many bytes left.
    Sized(u64),
    /// In a chunked body.
    Chunked(Chunk),
    /// Bytes this does not follow (a head hyper rejects, or one too long):
    /// from here on, nothing is known.
    Lost,
}

/// Where a chunked body is, as hyper's decoder steps through it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Before a chunk's first size digit.
    Start,
    /// In a chunk's size.
    Size(u64),
    /// Blanks after the size.
    SizeBlank(u64),
    /// In a chunk extension (ignored), up to the line's end.
    Extension(u64),
    /// The size line's CR was read.
    SizeLf(u64),
    /// In a chunk's data: this many bytes left.
    Data(u64),
    DataCr,
    DataLf,
    /// After the last chunk's size line: the end, or a trailer.
    EndCr,
    Trailer,
    TrailerLf,
    EndLf,
}

impl Framing {
    /// Whether everything read so far ends where a request ends: nothing
    /// of a head or a body is still to come.
    pub(crate) fn at_request_end(&self) -> bool {
        self.state == State::Head && self.head.is_empty() && !self.cr
    }

    /// Whether the bytes read so far end inside a request's head: its
    /// start was read, not yet its end.
    pub(crate) fn in_head(&self) -> bool {
        self.state == State::Head && !self.head.is_empty()
    }

    /// How many request heads were read whole (hyper may have read more
    /// than it served).
    pub(crate) fn heads(&self) -> usize {
        self.heads
    }

    /// Whether the bytes stopped making sense as HTTP/1 requests: nothing
    /// is known from here on, and reading through this is no use.
    pub(crate) fn is_lost(&self) -> bool {
        self.state == State::Lost
    }

    /// Follows `bytes`, the next bytes read from the connection.
    pub(crate) fn read(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            bytes = match self.state {
                State::Lost => return,
                State::Head => match self.head(bytes) {
                    Some(rest) => rest,
                    None => return,
                },
                State::Sized(left) => {
                    let n = left.min(bytes.len() as u64);
                    self.state = match left - n {
                        0 => State::Head,
                        left => State::Sized(left),
                    };
                    &bytes[n as usize..]
                }
                State::Chunked(Chunk::Data(left)) => {
                    let n = left.min(bytes.len() as u64);
                    self.state = State::Chunked(match left - n {
                        0 => Chunk::DataCr,
                        left => Chunk::Data(left),
                    });
                    &bytes[n as usize..]
                }
                State::Chunked(chunk) => {
                    self.state = chunk.step(bytes[0]).map_or(State::Lost, |next| match next {
                        Some(chunk) => State::Chunked(chunk),
                        None => State::Head,
                    });
                    &bytes[1..]
                }
            };
        }
    }

    /// Reads head bytes: returns what follows a head completed by them, or
    /// `None` when they were all taken (into an incomplete head, or lost).
    fn head<'b>(&mut self, mut bytes: &'b [u8]) -> Option<&'b [u8]> {
        if self.head.is_empty() {
            // Empty lines before a request line are skipped, as httparse
            // does: CRLF or a bare LF.
            loop {
                match (self.cr, bytes.first()) {
                    (_, None) => return None,
                    (true, Some(b'\n')) => self.cr = false,
                    (true, Some(_)) => return self.lose(),
                    (false, Some(b'\r')) => self.cr = true,
                    (false, Some(b'\n')) => {}
                    (false, Some(_)) => break,
                }
                bytes = &bytes[1..];
            }
            return match parse(bytes) {
                Parsed::Head(len, body) => {
                    self.complete(body);
                    Some(&bytes[len..])
                }
                Parsed::Partial if bytes.len() <= MAX_HEAD => {
                    self.head.reserve_exact(bytes.len());
                    self.head.extend_from_slice(bytes);
                    None
                }
                _ => self.lose(),
            };
        }
        // The start of a head was read before: only the bytes a head this
        // long could take are kept, and it is parsed again only once its
        // end may have come (as hyper does).
        let before = self.head.len();
        let take = bytes.len().min(MAX_HEAD + 1 - before);
        self.head.reserve_exact(take);
        self.head.extend_from_slice(&bytes[..take]);
        let parsed = match may_end(&self.head, before) {
            true => parse(&self.head),
            false => Parsed::Partial,
        };
        match parsed {
            // It was incomplete without the new bytes: it ends in them.
            Parsed::Head(len, body) if len > before => {
                self.complete(body);
                self.head = Vec::new();
                Some(&bytes[len - before..])
            }
            Parsed::Partial if self.head.len() <= MAX_HEAD => None,
            _ => self.lose(),
        }
    }

    /// A head was read whole; its body (if any) follows.
    fn complete(&mut self, body: State) {
        self.state = body;
        self.heads += 1;
    }

    fn lose(&mut self) -> Option<&'static [u8]> {
        self.state = State::Lost;
        self.head = Vec::new();
        None
    }
}

impl Chunk {
    /// The state after byte `b`: `Err` where hyper's decoder fails,
    /// `Ok(None)` at the body's end.
    fn step(self, b: u8) -> Result<Option<Chunk>, ()> {
        use Chunk::*;
        let next = match (self, b) {
            (Start, _) => Size(hex(0, b).ok_or(())?),
            (Size(size), b'\t' | b' ') => SizeBlank(size),
            (Size(size) | SizeBlank(size), b';') => Extension(size),
            (Size(size) | SizeBlank(size) | Extension(size), b'\r') => SizeLf(size),
            (Size(size), _) => Size(hex(size, b).ok_or(())?),
            (SizeBlank(size), b'\t' | b' ') => SizeBlank(size),
            (SizeBlank(_), _) | (Extension(_), b'\n') => return Err(()),
            (Extension(size), _) => Extension(size),
            (SizeLf(0), b'\n') => EndCr,
            (SizeLf(size), b'\n') => Data(size),
            (Data(left), _) => Data(left.saturating_sub(1)),
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => Start,
            (EndCr, b'\r') => EndLf,
            (Trailer, b'\r') => TrailerLf,
            (EndCr | Trailer, _) => Trailer,
            (TrailerLf, b'\n') => EndCr,
            (EndLf, b'\n') => return Ok(None),
            (SizeLf(_) | DataCr | DataLf | TrailerLf | EndLf, _) => return Err(()),
        };
        Ok(Some(match next {
            Data(0) => DataCr,
            next => next,
        }))
    }
}

/// `size` with hex digit `b` appended, or `None` if `b` is not one or the
/// size overflows.
fn hex(size: u64, b: u8) -> Option<u64> {
    let digit = (b as char).to_digit(16)?;
    size.checked_mul(16)?.checked_add(u64::from(digit))
}

/// Whether a head's end (an empty line) may be in `head` past `before`.
fn may_end(head: &[u8], before: usize) -> bool {
    let from = before.saturating_sub(3);
    let tail = &head[from..];
    tail.windows(2).any(|w| w == b"\n\n") || tail.windows(3).any(|w| w == b"\n\r\n")
}

enum Parsed {
    /// A complete head this long, and what its body is.
    Head(usize, State),
    Partial,
    Bad,
}

/// Parses a request head at the start of `bytes` as hyper does, and tells
/// how its body is framed.
fn parse(bytes: &[u8]) -> Parsed {
    let mut headers = [std::mem::MaybeUninit::uninit(); MAX_HEADERS];
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(bytes, &mut headers) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(_) => return Parsed::Bad,
    };
    match body(&req) {
        Some(body) => Parsed::Head(len, body),
        None => Parsed::Bad,
    }
}

/// How a request's body is framed, by hyper's rules (`role.rs`, the
/// server's `parse`): `Transfer-Encoding` (HTTP/1.1 only) wins over
/// `Content-Length` and must end in `chunked`; several `Content-Length`
/// must agree. `None` where hyper rejects the request.
fn body(req: &httparse::Request<'_, '_>) -> Option<State> {
    let http11 = req.version == Some(1);
    let (mut length, mut te, mut chunked) = (None, false, false);
    for header in req.headers.iter() {
        if header.name.eq_ignore_ascii_case("transfer-encoding") {
            if !http11 {
                return None;
            }
            te = true;
            length = None;
            chunked = std::str::from_utf8(header.value).is_ok_and(|value| {
                value
                    .rsplit(',')
                    .next()
                    .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"))
            });
        } else if header.name.eq_ignore_ascii_case("content-length") && !te {
            let len = digits(header.value)?;
            if length.is_some_and(|prev| prev != len) {
                return None;
            }
            length = Some(len);
        }
    }
    match (te, chunked, length) {
        (true, true, _) => Some(State::Chunked(Chunk::Start)),
        (true, false, _) => None,
        (false, _, Some(len)) if len > 0 => Some(State::Sized(len)),
        (false, _, _) => Some(State::Head),
    }
}

/// A `Content-Length` value: decimal digits only.
fn digits(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| match b {
        b'0'..=b'9' => n.checked_mul(10)?.checked_add(u64::from(b - b'0')),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::Framing;

    /// Reads `parts` one after the other, and tells after each whether the
    /// bytes so far end where a request ends.
    fn ends(parts: &[&[u8]]) -> Vec<bool> {
        let mut framing = Framing::default();
        parts
            .iter()
            .map(|part| {
                framing.read(part);
                framing.at_request_end()
            })
            .collect()
    }

    /// Reads all of `bytes` one byte at a time, and tells after each byte.
    fn ends_bytewise(bytes: &[u8]) -> Vec<bool> {
        let parts: Vec<&[u8]> = bytes.chunks(1).collect();
        ends(&parts)
    }

    #[test]
    fn a_request_without_a_body_ends_with_its_head() {
        assert_eq!(ends(&[b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"]), [true]);
        assert_eq!(
            ends(&[b"GET / HTTP/1.1\r\n", b"host: a\r\n", b"\r\n"]),
            [false, false, true]
        );
        let bytewise = ends_bytewise(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n");
        assert_eq!(bytewise.iter().filter(|end| **end).count(), 1);
        assert!(bytewise.last().unwrap());
        // Bare line feeds, as httparse takes them.
        assert_eq!(ends(&[b"GET / HTTP/1.1\nhost: a\n\n"]), [true]);
    }

    #[test]
    fn a_head_is_begun_from_its_first_byte_to_its_end_only() {
        let mut framing = Framing::default();
        let mut begun = |part: &[u8]| {
            framing.read(part);
            framing.in_head()
        };
        let sized = b"POST / HTTP/1.1\r\ncontent-length: 2\r\n\r\n";
        assert!(!begun(b"\r\n"), "an empty line before a request");
        assert!(begun(b"P"));
        assert!(begun(&sized[1..sized.len() - 1]));
        assert!(!begun(b"\n"), "the head ended");
        assert!(!begun(b"h"), "in the body");
        assert!(!begun(b"i"));
        assert!(begun(b"GET / HT"), "the next head");
        assert!(!begun(b"TP/1.1\r\n\r\n"));
        assert!(!begun(b"\x01\x02 nonsense\r\n\r\n"), "lost: nothing known");
    }

    #[test]
    fn a_sized_body_ends_after_its_length() {
        let head = b"POST / HTTP/1.1\r\ncontent-length: 5\r\n\r\n";
        assert_eq!(ends(&[head, b"hel", b"lo"]), [false, false, true]);
        assert_eq!(ends(&[&[head.as_slice(), b"hello"].concat()]), [true]);
        assert_eq!(
            ends(&[b"POST / HTTP/1.1\r\ncontent-length: 0\r\n\r\n"]),
            [true]
        );
        // The same length twice is one length.
        let twice = b"POST / HTTP/1.1\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\nab";
        assert_eq!(ends(&[twice]), [true]);
    }

    #[test]
    fn pipelined_requests_are_followed_one_after_the_other() {
        let two = b"POST /a HTTP/1.1\r\ncontent-length: 3\r\n\r\nabcGET /b HTTP/1.1\r\n\r\n";
        assert_eq!(ends(&[two]), [true]);
        assert_eq!(ends(&[&two[..two.len() - 2]]), [false]);
        let bytewise = ends_bytewise(two);
        let at: Vec<usize> = (0..bytewise.len()).filter(|i| bytewise[*i]).collect();
        // After the first body and after the second head.
        let first = two.len() - b"GET /b HTTP/1.1\r\n\r\n".len();
        assert_eq!(at, [first - 1, two.len() - 1]);
    }

    #[test]
    fn a_chunked_body_ends_after_its_last_chunk_and_trailers() {
        let body: &[u8] = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n\
            5;ext=1\r\nhello\r\nA \r\n0123456789\r\n0\r\n\r\n";
        assert_eq!(ends(&[body]), [true]);
        let bytewise = ends_bytewise(body);
        assert_eq!(bytewise.iter().filter(|end| **end).count(), 1);
        assert!(bytewise.last().unwrap());
        let trailers: &[u8] = b"POST / HTTP/1.1\r\ntransfer-encoding: gzip, chunked\r\n\r\n\
            3\r\nabc\r\n0\r\nx-sum: 1\r\nx-more: 2\r\n\r\n";
        assert_eq!(ends(&[trailers]), [true]);
        assert_eq!(ends(&[&trailers[..trailers.len() - 2]]), [false]);
        // A chunk's data may look like anything, a chunk end included.
        let tricky: &[u8] = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n\
            5\r\n0\r\n\r\n\r\n0\r\n\r\n";
        let bytewise = ends_bytewise(tricky);
        assert_eq!(bytewise.iter().filter(|end| **end).count(), 1);
    }

    #[test]
    fn transfer_encoding_wins_over_content_length() {
        let both: &[u8] = b"POST / HTTP/1.1\r\ncontent-length: 100\r\n\
            transfer-encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(ends(&[both]), [true]);
        let after: &[u8] = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\
            content-length: 100\r\n\r\n0\r\n\r\n";
        assert_eq!(ends(&[after]), [true]);
    }

    #[test]
    fn empty_lines_before_a_request_are_not_a_request() {
        let head = b"POST / HTTP/1.1\r\ncontent-length: 1\r\n\r\nx";
        assert_eq!(ends(&[head, b"\r\n"]), [true, true]);
        assert_eq!(ends(&[head, b"\r\nGET"]), [true, false]);
        assert_eq!(ends(&[head, b"\n\r\n\n"]), [true, true]);
        // A CR alone: its LF may still come (httparse waits for it).
        assert_eq!(ends(&[head, b"\r", b"\n"]), [true, false, true]);
        assert_eq!(
            ends(&[head, b"\r", b"\nGET / HTTP/1.1\r\n\r\n"]),
            [true, false, true]
        );
        // A CR followed by anything else is an error to httparse.
        let mut framing = Framing::default();
        framing.read(&[head.as_slice(), b"\rGET / HTTP/1.1\r\n\r\n"].concat());
        assert!(framing.is_lost());
    }

    #[test]
    fn heads_read_whole_are_counted() {
        let mut framing = Framing::default();
        framing.read(b"GET /a HTTP/1.1\r\n\r\nPOST /b HTTP/1.1\r\ncontent-length: 2\r\n\r\n");
        assert_eq!(framing.heads(), 2);
        framing.read(b"hiGET /c HTTP/1.1\r\n");
        assert_eq!(framing.heads(), 2);
        framing.read(b"\r\n");
        assert_eq!(framing.heads(), 3);
    }

    #[test]
    fn what_hyper_rejects_is_never_read_as_a_request_end() {
        for bad in [
            &b"POST / HTTP/1.1\r\ntransfer-encoding: gzip\r\n\r\n"[..],
            b"POST / HTTP/1.0\r\ntransfer-encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\ncontent-length: +1\r\n\r\n",
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nZ\r\n",
            b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n1\r\nab\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
        ] {
            let mut framing = Framing::default();
            framing.read(bad);
            assert!(framing.is_lost(), "{:?}", String::from_utf8_lossy(bad));
            framing.read(b"GET / HTTP/1.1\r\n\r\n");
            assert!(!framing.at_request_end());
        }
    }

    /// Past limits hyper has and this does not, this still follows a body
    /// (hyper ends the connection): never a request end.
    #[test]
    fn past_hyper_s_limits_a_body_is_still_followed() {
        let mut framing = Framing::default();
        framing.read(b"POST / HTTP/1.1\r\ncontent-length: 18446744073709551615\r\n\r\nabc");
        assert!(!framing.at_request_end() && !framing.is_lost());
        let mut framing = Framing::default();
        framing.read(b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n1;");
        framing.read(&[b'x'; 20 << 10]);
        framing.read(b"\r\na\r\n0\r\nx-trailer: ");
        framing.read(&[b'y'; 20 << 10]);
        assert!(!framing.at_request_end() && !framing.is_lost());
        framing.read(b"\r\n\r\n");
        assert!(framing.at_request_end());
    }

    #[test]
    fn a_head_too_long_to_follow_is_lost() {
        let mut framing = Framing::default();
        framing.read(b"GET / HTTP/1.1\r\nx-long: ");
        for _ in 0..100 {
            framing.read(&[b'a'; 1024]);
        }
        assert!(framing.is_lost());
        assert!(!framing.at_request_end());
    }

    #[test]
    fn a_head_split_anywhere_is_read_the_same() {
        let two: &[u8] = b"POST /a HTTP/1.1\r\nhost: a\r\ncontent-length: 2\r\n\r\nhi\
            POST /b HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n";
        for split in 1..two.len() {
            let mut framing = Framing::default();
            framing.read(&two[..split]);
            framing.read(&two[split..]);
            assert!(framing.at_request_end(), "split at {split}");
        }
    }
}
