#!/usr/bin/env bash
# full_run.sh NNQC SRC EXAMPLE MIN — an example's full run on the real Fashion-MNIST
# (label "long", not in the default suite): its hard-quantized test accuracy must reach
# MIN. Used for the README's flagship MLP (0.87) and binary LeNet-5 (the 0.90).
set -eu
NNQC="$1"; SRC="$2"; EXAMPLE="$3"; MIN="$4"
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
"$NNQC" run "$SRC/examples/$EXAMPLE" --progress=lines --metrics m.jsonl
hard=$(json_field m.jsonl test_acc_hard)
echo "$EXAMPLE: hard-quantized test accuracy $hard"
ge "$hard" "$MIN" || fail "$EXAMPLE: hard-quantized test accuracy $hard < $MIN"
echo "1 passed, 0 failed"
