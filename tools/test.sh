#!/usr/bin/env bash
# tools/test.sh [ctest options] — set up (with what only the tests need: setup.sh's
# NNQ_TEST_PACKAGES), build, then run the whole default test suite;
# then build the sanitized tree (build-asan/: clang, ASan + UBSan) and run there the
# tests labelled "sanitize" (unit, golden, fuzz_replay, a short end-to-end subset) and
# "fuzz" (libFuzzer: fuzz_compile 60 s, fuzz_npy 20 s, fuzz_data 20 s, fuzz_model 30 s,
# fuzz_checkpoint 20 s). NNQ_SANITIZE_TESTS=0 skips the second part.
# Long runs (full training) carry the ctest label "long": tools/test.sh -L long (with
# options, only the main tree's ctest runs, with them).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
nnq_install_packages "${NNQ_TEST_PACKAGES[@]}"
cd "$NNQ_BUILD_DIR"
if [ $# -gt 0 ]; then exec ctest --output-on-failure "$@"; fi
ctest --output-on-failure -LE long
[ "${NNQ_SANITIZE_TESTS:-1}" = 0 ] && exit 0
nnq_build_sanitized
cd "$NNQ_ASAN_BUILD_DIR"
exec ctest --output-on-failure -L 'sanitize|fuzz'
