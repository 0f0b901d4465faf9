//! The conformance suite, run against the std-threads adapter.

graceful_conformance::suite!(graceful_std);
