#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine: `kill` (procps) to
# signal the example processes, curl with HTTP/2 for the HTTP tests, and
# cargo-nextest to run the tests with a time bound each.
source "$(dirname "$0")/lib.sh"

missing=()
command -v kill >/dev/null || missing+=(procps)
if ! command -v curl >/dev/null || ! curl --version | grep -q HTTP2; then
    missing+=(curl)
fi
if [ ${#missing[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    step $sudo apt-get update -q
    step $sudo apt-get install -y -q "${missing[@]}"
fi

if ! cargo nextest --version >/dev/null 2>&1; then
    step cargo install cargo-nextest --locked
fi
