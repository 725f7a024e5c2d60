#!/usr/bin/env bash
# bench/bundle.sh OUT.tar.xz — this build, with every library it links, as a tarball that
# runs the benchmarks on another x86-64 Linux machine that has none of nnq's packages and
# no network (a many-core server lent for a measurement): nnqc, bench/machine and
# tests/e2e/make_cifar (stripped), the shared libraries they load (glibc's loader and libc
# included, so the other machine's own versions do not matter), and a Fashion-MNIST subset
# (12,000 training and 1,000 test images, what the benchmarks read). Builds first
# (tools/setup.sh). On the other machine, in a copy of this repository (the stdlib and
# examples come from it):
#     tar xJf OUT.tar.xz                      # build/ (wrappers and libraries) and fmnist/
#     export NNQ_PREBUILT=$PWD/build NNQ_STDLIB=$PWD/stdlib FMNIST=$PWD/fmnist
#     bench/thread_scaling.sh --torch         # or bench/run
# (NNQ_PREBUILT: the benchmarks use that build as it is, with no set-up.)
# Each program in build/ is a wrapper that starts the real one (NAME.bin) through the
# bundled loader with the bundled libraries. About 40 MB.
set -euo pipefail
[ $# = 1 ] || { echo "usage: bench/bundle.sh OUT.tar.xz" >&2; exit 2; }
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
source "$root/tools/setup.sh" > /dev/null
. "$root/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/build/lib" "$tmp/fmnist"
for b in compiler/nnqc bench/machine tests/e2e/make_cifar; do
    mkdir -p "$tmp/build/$(dirname "$b")"
    strip -o "$tmp/build/$b.bin" "$NNQ_BUILD_DIR/$b"
    for l in $(ldd "$NNQ_BUILD_DIR/$b" | awk '/=>/ { print $3 } /ld-linux/ { print $1 }'); do
        cp -nL "$l" "$tmp/build/lib/"
    done
    cat > "$tmp/build/$b" << 'EOF'
#!/bin/sh
# bench/bundle.sh's wrapper: the real program through the bundled loader and libraries
L="$(cd "$(dirname "$0")" && pwd)"
while [ ! -d "$L/lib" ] && [ "$L" != / ]; do L=$(dirname "$L"); done
exec "$L/lib/ld-linux-x86-64.so.2" --library-path "$L/lib" "$0.bin" "$@"
EOF
    chmod +x "$tmp/build/$b"
done
make_subset "$tmp/subset" 12000 1000
for f in "$tmp"/subset/fashion-mnist/*; do gzip -c "$f" > "$tmp/fmnist/$(basename "$f")"; done
"$tmp/build/compiler/nnqc" check "$root/examples/fashion_mlp_pmf.nnq" > /dev/null ||
    { echo "bench/bundle.sh: the bundled nnqc does not run here" >&2; exit 1; }
tar cJf "$out" -C "$tmp" build fmnist
echo "written: $out ($(du -h "$out" | cut -f1))"
