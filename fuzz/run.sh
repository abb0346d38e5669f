#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) with its seed corpus.
# Needs a nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz
# The same inputs run as property tests in `cargo test` (tests/properties.rs, tests/pzf.rs,
# tests/pickle.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${SECONDS_PER_TARGET:-${1:-60}}"
# New inputs go to a scratch corpus (the first folder); the seeds in the repo stay as they are.
# A crash is saved under fuzz/artifacts/: add it to fuzz/corpus/<target>/ once fixed.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in response_parser name_validator request_parser pzf_decode huffman_decode pickle_reader; do
  echo "== $target ($seconds s)"
  mkdir -p "$scratch/$target"
  cargo +nightly fuzz run "$target" "$scratch/$target" "fuzz/corpus/$target" -- -max_total_time="$seconds"
done
