//! The conformance suite, run against the smol adapter.

graceful_conformance::suite!(graceful_smol);
