#!/usr/bin/env bash
# The README's flagship run on the full Fashion-MNIST (label "long", not in the default
# suite): the hard-quantized test accuracy must reach 0.87.
set -eu
NNQC="$1"; SRC="$2"
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
"$NNQC" run "$SRC/examples/fashion_mlp_pmf.nnq" --progress=lines --metrics m.jsonl
hard=$(json_field m.jsonl test_acc_hard)
echo "hard-quantized test accuracy: $hard"
ge "$hard" 0.87 || fail "hard-quantized test accuracy $hard < 0.87"
echo "1 passed, 0 failed"
