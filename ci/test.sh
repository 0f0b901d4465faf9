#!/usr/bin/env bash
# The test command: every crate's tests, the conformance suite of every
# adapter, the end-to-end tests against the examples as real processes,
# and the doctests.
source "$(dirname "$0")/lib.sh"

step bash ci/setup.sh
step cargo build --workspace --examples
export GRACEFUL_EXAMPLES_BUILT=1
step cargo nextest run --workspace --no-fail-fast
step cargo test --workspace --doc
