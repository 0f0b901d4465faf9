#!/usr/bin/env bash
# API docs build with no warnings (every public item documented, no broken
# links).
source "$(dirname "$0")/lib.sh"

export RUSTDOCFLAGS="-D warnings"
step cargo doc --workspace --no-deps
