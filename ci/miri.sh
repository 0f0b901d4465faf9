#!/usr/bin/env bash
# Miri over the tests that run `unsafe` (the counting allocator of the
# allocation test) and the core's thread-level synchronisation. The core
# itself forbids unsafe code. Installs nightly's miri if missing.
source "$(dirname "$0")/lib.sh"

if ! cargo +nightly miri --version >/dev/null 2>&1; then
    step rustup component add --toolchain nightly miri rust-src
fi
step cargo +nightly miri test -p graceful-core --test alloc --test phases --test signals
