#!/usr/bin/env bash
# Fuzzes the two upload paths with cargo-fuzz (libFuzzer + AddressSanitizer):
# image decode + face detection, and audio decode + MFCC. Each target starts
# from its committed seeds (fuzz/corpus/<target>/seed-*, written by
# `cargo run --release --example make_fuzz_seeds`) and runs for SECONDS
# (default 600). New corpus entries stay in fuzz/corpus/ (git-ignored); a
# crash stops the run, is saved under fuzz/artifacts/<target>/ and fails the
# script: copy it into fuzz/regressions/<target>/, fix the bug, and
# tests/fuzz_corpus.rs replays it from then on.
#
# Usage: scripts/fuzz.sh [SECONDS]
#        FUZZ_RUNS=N scripts/fuzz.sh   N executions a target from a fixed seed
#                                      instead: reproducible, what CI runs
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi
# cargo-fuzz passes -Z flags (sanitizer, coverage instrumentation). The
# stable toolchain accepts them with RUSTC_BOOTSTRAP=1, so no nightly
# toolchain has to be downloaded (nothing outside the package registries is
# reachable here).
export RUSTC_BOOTSTRAP=1
# libtorch and OpenCV are not instrumented; their own allocations and
# duplicate globals are not ours to report.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0:alloc_dealloc_mismatch=0:detect_leaks=0}
cd fuzz
cargo fuzz build -O
for target in image_decode_detect audio_decode_mfcc; do
  if [ -n "${FUZZ_RUNS:-}" ]; then echo "fuzzing $target for $FUZZ_RUNS runs"; else echo "fuzzing $target for $seconds s"; fi
  mkdir -p "corpus/$target"
  log="../target/fuzz-$target.log"
  mkdir -p ../target
  status=0
  if [ -n "${FUZZ_RUNS:-}" ]; then
    # A fixed seed and count, from the committed seeds only: the same inputs
    # every time, so CI cannot pass or fail by luck.
    budget=(-runs="$FUZZ_RUNS" -seed=1)
    corpus=$(mktemp -d)
    cp "corpus/$target"/seed-* "$corpus/"
  else
    budget=(-max_total_time="$seconds")
    corpus="corpus/$target"
  fi
  cargo fuzz run -O "$target" "$corpus" -- \
    "${budget[@]}" -timeout=10 -rss_limit_mb=4096 -max_len=262144 -print_final_stats=1 \
    > "$log" 2>&1 || status=$?
  if [ -n "${FUZZ_RUNS:-}" ]; then rm -rf "$corpus"; fi
  grep -E "INITED|DONE|stat::number_of_executed_units|stat::peak_rss|SUMMARY|panicked" "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log"
    echo "fuzzing $target failed (exit $status); the input is under fuzz/artifacts/$target/" >&2
    exit "$status"
  fi
done
