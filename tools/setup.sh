#!/usr/bin/env bash
# tools/setup.sh — installs what nnq needs (Debian 12 packages) when missing, then
# configures and builds into build/ (or $NNQ_BUILD_DIR). Sourced by tools/train.sh and
# tools/test.sh; safe to run again (only missing packages are installed, the build is
# incremental). nnq_build_sanitized (tools/test.sh calls it) builds a second tree,
# build-asan/ (or $NNQ_ASAN_BUILD_DIR): clang, ASan + UBSan, and the libFuzzer target.
set -euo pipefail

NNQ_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NNQ_BUILD_DIR="${NNQ_BUILD_DIR:-$NNQ_ROOT/build}"
NNQ_ASAN_BUILD_DIR="${NNQ_ASAN_BUILD_DIR:-$NNQ_ROOT/build-asan}"

# Build tools, the libraries nnq links (LLVM, OpenBLAS, oneDNN, LIBXSMM, Open MPI, zlib) and the
# example's data; Open MPI's mpirun for data-parallel runs.
NNQ_PACKAGES=(gcc make cmake re2c bison llvm-dev libopenblas-dev libdnnl-dev libxsmm-dev libopenmpi-dev openmpi-bin zlib1g-dev
              dataset-fashion-mnist)
# What only the tests need (tools/test.sh installs them): clang and its sanitizer and
# libFuzzer runtimes for the sanitized build; QEMU's user mode, which runs nnq on emulated
# CPUs without AVX-512 and without AVX (tests/e2e/emulated_cpus.sh).
NNQ_TEST_PACKAGES=(clang libclang-rt-14-dev qemu-user)

# nnq_install_packages PACKAGE...: apt-get installs those not installed.
nnq_install_packages() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "nnq: installing ${missing[*]}"
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "nnq: error: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
        sudo=sudo
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

nnq_jobs() { nproc 2>/dev/null || echo 2; }

nnq_build() {
    if [ ! -f "$NNQ_BUILD_DIR/CMakeCache.txt" ]; then
        cmake -S "$NNQ_ROOT" -B "$NNQ_BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    fi
    cmake --build "$NNQ_BUILD_DIR" -j "$(nnq_jobs)"
}

nnq_build_sanitized() {
    if [ ! -f "$NNQ_ASAN_BUILD_DIR/CMakeCache.txt" ]; then
        CC=clang cmake -S "$NNQ_ROOT" -B "$NNQ_ASAN_BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
            -DNNQ_SANITIZE=ON -DNNQ_FUZZ=ON >/dev/null
    fi
    cmake --build "$NNQ_ASAN_BUILD_DIR" -j "$(nnq_jobs)"
}

nnq_install_packages "${NNQ_PACKAGES[@]}"
nnq_build
