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

# graceful-std serves HTTP on plain threads: its dependencies (hyper's h2
# uses tokio's I/O traits) must not bring a tokio runtime or smol executor.
runtimes=$(cargo tree -p graceful-std --features http -e normal,features --prefix none \
    | grep -E '^(tokio feature "(rt|rt-multi-thread|time|net)"|async-executor |smol )' | sort -u || true)
if [ -n "$runtimes" ]; then
    echo "graceful-std depends on an async runtime:"; echo "$runtimes"; exit 1
fi
echo "graceful-std (with http): no tokio runtime, no smol executor"

# graceful-smol: no tokio at all without http; with it, no tokio runtime.
if cargo tree -p graceful-smol --no-default-features -e normal --prefix none | grep -q '^tokio '; then
    echo "graceful-smol without http depends on tokio"; exit 1
fi
runtimes=$(cargo tree -p graceful-smol --features http -e normal,features --prefix none \
    | grep -E '^tokio feature "(rt|rt-multi-thread|time|net)"' | sort -u || true)
if [ -n "$runtimes" ]; then
    echo "graceful-smol depends on a tokio runtime:"; echo "$runtimes"; exit 1
fi
echo "graceful-smol: no tokio without http, no tokio runtime with it"
