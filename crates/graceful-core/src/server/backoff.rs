use std::io;
use std::time::Duration;

/// Back-off after a failed `accept`: 5 ms, doubling, at most 1 s, reset
/// by the next success. A server that runs out of file descriptors waits
/// for some to be freed instead of spinning.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    /// The first delay.
    pub(crate) const MIN: Duration = Duration::from_millis(5);
    /// The longest delay.
    pub(crate) const MAX: Duration = Duration::from_secs(1);

    /// A back-off at its first delay.
    pub(crate) fn new() -> Backoff {
        Backoff { next: Self::MIN }
    }

    /// The delay to wait now; doubles the next one.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    /// Back to the first delay, after a success.
    pub(crate) fn reset(&mut self) {
        self.next = Self::MIN;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

/// Whether an `accept` error means the listener itself is unusable (a bad
/// descriptor, not a listening socket) rather than a passing condition
/// (EMFILE, ENFILE, ENOBUFS, ENOMEM, ECONNABORTED, EPROTO, EINTR...), which
/// is backed off and retried.
pub(crate) fn is_fatal_accept_error(e: &io::Error) -> bool {
    #[cfg(target_os = "linux")]
    {
        const EBADF: i32 = 9;
        const EINVAL: i32 = 22;
        const ENOTSOCK: i32 = 88;
        const EOPNOTSUPP: i32 = 95;
        if let Some(code) = e.raw_os_error() {
            return matches!(code, EBADF | EINVAL | ENOTSOCK | EOPNOTSUPP);
        }
    }
    matches!(
        e.kind(),
        io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
    )
}

/// Whether an `accept` error means the process (EMFILE) or the system
/// (ENFILE) is out of descriptors: no accept succeeds until a connection
/// ends.
pub(crate) fn is_out_of_descriptors(e: &io::Error) -> bool {
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    matches!(e.raw_os_error(), Some(ENFILE | EMFILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_from_5ms_to_1s_and_resets() {
        let mut b = Backoff::new();
        let delays: Vec<u64> = (0..10).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(5));
    }

    #[test]
    fn classifies_accept_errors() {
        let emfile = io::Error::from_raw_os_error(24);
        let econnaborted = io::Error::from_raw_os_error(103);
        let ebadf = io::Error::from_raw_os_error(9);
        assert!(!is_fatal_accept_error(&emfile));
        assert!(is_out_of_descriptors(&emfile));
        assert!(is_out_of_descriptors(&io::Error::from_raw_os_error(23)));
        assert!(!is_out_of_descriptors(&econnaborted));
        assert!(!is_fatal_accept_error(&econnaborted));
        assert!(is_fatal_accept_error(&ebadf));
        assert!(!is_fatal_accept_error(&io::Error::from(
            io::ErrorKind::Interrupted
        )));
    }
}
