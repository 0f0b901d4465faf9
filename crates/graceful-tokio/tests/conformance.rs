//! The conformance suite, run against the tokio adapter.

graceful_conformance::suite!(graceful_tokio);
