#!/usr/bin/env bash
# tools/train.sh [FILE.nnq] [nnqc options] — set up, build, then train (default: the
# flagship example, binary LeNet-300-100 on Fashion-MNIST with Proximal Mean-Field).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
file="$NNQ_ROOT/examples/fashion_mlp_pmf.nnq"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    file="$1"
    shift
fi
exec "$NNQ_BUILD_DIR/compiler/nnqc" run "$file" "$@"
