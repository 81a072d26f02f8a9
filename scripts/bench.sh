#!/usr/bin/env bash
# Run the whole benchmark suite and draw its figures:
#   1. `cargo bench` (kernels, full steps, convergence) writes results/<machine-tag>/*.csv,
#   2. `vitssl report plot` draws the SVG figures next to them.
# VITSSL_TAG overrides the machine tag; extra arguments go to cargo bench (e.g. `--bench kernels`).
#
# usage: [VITSSL_TAG=name] scripts/bench.sh [CARGO_BENCH_ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench "$@"
tag=${VITSSL_TAG:-$(cargo run --release --quiet -- info | sed -n 's/^machine tag: //p')}
cargo run --release --quiet -- report plot "results/$tag"
