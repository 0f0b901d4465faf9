#!/usr/bin/env bash
# Formatting and clippy, warnings denied.
source "$(dirname "$0")/lib.sh"

step cargo fmt --all -- --check
step cargo clippy --workspace --all-targets -- -D warnings
# Each adapter without its optional features (the workspace build unifies them).
step cargo clippy -p graceful-std -p graceful-tokio -p graceful-smol -p graceful-http -- -D warnings
