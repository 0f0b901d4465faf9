#!/usr/bin/env bash
# Model-checks the core's synchronisation with loom (STYLE §8). Its own
# target subdirectory, so the `--cfg loom` build does not evict the others.
source "$(dirname "$0")/lib.sh"

export RUSTFLAGS="--cfg loom"
export LOOM_MAX_PREEMPTIONS="${LOOM_MAX_PREEMPTIONS:-3}"
step cargo test -p graceful-core --release --test loom --target-dir target/loom
