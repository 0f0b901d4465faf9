//! The conformance suite, run against the std-threads adapter.

// No http::serve on plain threads: the HTTP scenarios are listed, ignored.
graceful_conformance::suite!(graceful_std, without_http);
