//! The conformance suite and its HTTP scenarios, run against the std-threads adapter.

graceful_conformance::http_suite!(graceful_std);
