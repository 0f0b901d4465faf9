//! Runnable services built on graceful; see `examples/` and `tests/`.
