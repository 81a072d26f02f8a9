#!/usr/bin/env bash
# Check the working tree for benchmark regressions against an older commit:
#   1. benches OLD_REV (in a temporary git worktree) with `--save-baseline before`,
#   2. benches the working tree with `--save-baseline after`,
#   3. runs `vitssl report regress` on the two criterion baselines.
# Exit status: 0 no regression, 1 regression (table on stdout), 2 broken input.
# THRESHOLD (default 5%) sets the tolerated slowdown; extra arguments go to criterion
# (e.g. a benchmark filter such as `mae_sample`).
#
# usage: [THRESHOLD=5%] scripts/regress.sh OLD_REV [CRITERION_ARGS...]
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: [THRESHOLD=5%] $0 OLD_REV [CRITERION_ARGS...]" >&2
    exit 2
fi
old=$1
shift
root=$(git rev-parse --show-toplevel)
# Both runs must save into the same criterion directory.
export CRITERION_HOME="$root/target/criterion"
tree=$(mktemp -d)
trap 'git -C "$root" worktree remove --force "$tree"' EXIT
git -C "$root" worktree add --detach "$tree" "$old" >/dev/null

# `--bench '*'` runs the criterion targets only (libtest would reject --save-baseline).
# The old tree builds into its own target directory: sharing one would let cargo take the old
# bench binaries for fresh when the new tree is built.
(cd "$tree" && CARGO_TARGET_DIR="$root/target/regress-old" \
    cargo bench --bench '*' -- --save-baseline before "$@")
(cd "$root" && cargo bench --bench '*' -- --save-baseline after "$@")

cd "$root"
cargo run --release --quiet -- report regress --criterion-dir "$CRITERION_HOME" \
    --baseline before --current after --threshold "${THRESHOLD:-5%}"
