#!/usr/bin/env bash
# full_run.sh NNQC SRC EXAMPLE MIN [OPTIONS...] — an example's run on the real
# Fashion-MNIST (OPTIONS go to nnqc run, e.g. --epochs 3): its hard-quantized test
# accuracy must reach MIN. The full runs (label "long") check the README's flagship MLP
# (0.87) and binary LeNet-5 (0.90); shortened runs of the same recipes are in the
# default suite (tests/e2e/CMakeLists.txt states their measured spread).
set -eu
NNQC="$1"; SRC="$2"; EXAMPLE="$3"; MIN="$4"; shift 4
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
"$NNQC" run "$SRC/examples/$EXAMPLE" --progress=lines --metrics m.jsonl "$@"
hard=$(json_field m.jsonl test_acc_hard)
echo "$EXAMPLE: hard-quantized test accuracy $hard"
ge "$hard" "$MIN" || fail "$EXAMPLE: hard-quantized test accuracy $hard < $MIN"
echo "1 passed, 0 failed"
