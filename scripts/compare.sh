#!/usr/bin/env bash
# Compare benchmark results of machines or ISAs: median-time ratios relative to the first input,
# as markdown on stdout (and CSV with --out FILE.csv). Extra flags go to `vitssl report compare`.
#
# usage: scripts/compare.sh RESULTS_A RESULTS_B [MORE...] [--out FILE.csv] [--by variant]
#   e.g. scripts/compare.sh results/laptop results/server --out target/compare.csv
set -euo pipefail

if [[ $# -lt 2 ]]; then
    echo "usage: $0 RESULTS_A RESULTS_B [MORE...] [vitssl report compare flags]" >&2
    exit 2
fi
# No cd: relative input paths stay relative to the caller's directory.
exec cargo run --release --quiet --manifest-path "$(dirname "$0")/../Cargo.toml" -- \
    report compare "$@"
