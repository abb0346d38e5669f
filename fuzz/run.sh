#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60) with its seed corpus.
# Needs a nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz
# The same inputs run as property tests in `cargo test` (tests/properties.rs, tests/pzf.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${SECONDS_PER_TARGET:-${1:-60}}"
for target in response_parser name_validator request_parser pzf_decode huffman_decode; do
  echo "== $target ($seconds s)"
  cargo +nightly fuzz run "$target" "fuzz/corpus/$target" -- -max_total_time="$seconds"
done
