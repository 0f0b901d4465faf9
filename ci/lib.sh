# Sourced by every ci/*.sh: strict mode, the repository root, and `step`,
# which prints each command before running it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() {
    printf '\n+ %s\n' "$*" >&2
    "$@"
}
