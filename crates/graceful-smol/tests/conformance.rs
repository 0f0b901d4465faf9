//! The conformance suite and its HTTP scenarios, run against the smol adapter.

graceful_conformance::http_suite!(graceful_smol);
