//! The conformance suite and its HTTP scenarios, run against the tokio adapter.

graceful_conformance::http_suite!(graceful_tokio);
