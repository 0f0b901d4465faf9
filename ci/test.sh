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

# Every adapter runs the same scenarios: the lists must be equal.
for adapter in tokio smol std; do
    step cargo test --quiet -p "graceful-$adapter" --test conformance -- --list --format terse \
        | sort > "target/conformance-$adapter.txt"
done
step diff target/conformance-tokio.txt target/conformance-smol.txt
step diff target/conformance-tokio.txt target/conformance-std.txt
echo "conformance: $(wc -l < target/conformance-tokio.txt) scenarios, the same for every adapter"
