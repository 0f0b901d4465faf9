#!/usr/bin/env bash
# The contract's promise: code written against it compiles unchanged when
# the adapter is swapped by a Cargo rename. Runs tests/swap as committed
# (tokio), then copies with only the `rt = ...` line changed (smol, std).
source "$(dirname "$0")/lib.sh"

# The main target directory: the fixture shares its dependencies' builds.
target="$PWD/target"
step cargo run --quiet --manifest-path tests/swap/Cargo.toml --target-dir "$target"
for adapter in smol std; do
    copy="target/swap-$adapter"
    rm -rf "$copy"
    mkdir -p "$copy"
    cp -r tests/swap/src tests/swap/Cargo.toml "$copy/"
    [ -f tests/swap/Cargo.lock ] && cp tests/swap/Cargo.lock "$copy/"
    # target/swap-X sits as deep as tests/swap: the relative paths still hold.
    sed -i "s|^rt = { package = \"graceful-tokio\", path = \"../../crates/graceful-tokio\" }|rt = { package = \"graceful-$adapter\", path = \"../../crates/graceful-$adapter\" }|" "$copy/Cargo.toml"
    changed=$(diff tests/swap/Cargo.toml "$copy/Cargo.toml" | grep -c '^>' || true)
    [ "$changed" = 1 ] || { echo "expected exactly one changed line, got $changed" >&2; exit 1; }
    diff -r tests/swap/src "$copy/src"
    step cargo run --quiet --manifest-path "$copy/Cargo.toml" --target-dir "$target"
done
