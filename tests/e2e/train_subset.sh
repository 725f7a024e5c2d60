#!/usr/bin/env bash
# End-to-end: nnqc trains the binary PMF MLP on 10,000 Fashion-MNIST training images
# (1,000 held out for validation) for 8 epochs and must reach a hard-quantized test
# accuracy of at least 0.75 on 2,000 test images. Chance is 0.10; the full run of the
# same recipe reaches ~0.88, so 0.75 is far above chance yet leaves room for the small
# subset and budget. Also checks the metrics file and the saved model (and what
# nnqc inspect says of its size).
set -eu
NNQC="$1"; SRC="$2"
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make_subset "$tmp" 10000 2000
cp "$SRC/tests/e2e/mlp_subset.nnq" "$tmp/"
cd "$tmp"
"$NNQC" run mlp_subset.nnq --data-dir "$tmp" --threads 2 --metrics m.jsonl --progress=lines > out.txt 2>&1 || { cat out.txt; fail "nnqc run failed"; }
cat out.txt
[ -f m.jsonl ] || fail "no metrics file"
[ "$(grep -c '"epoch"' m.jsonl)" -ge 8 ] || fail "expected 8 epoch records in the metrics"
hard=$(json_field m.jsonl test_acc_hard); soft=$(json_field m.jsonl test_acc_soft)
[ -n "$hard" ] && [ -n "$soft" ] || fail "final metrics lack test accuracies"
echo "hard-quantized test accuracy $hard (soft $soft)"
ge "$hard" 0.75 || fail "hard-quantized test accuracy $hard < 0.75"
[ -s mlp_subset.nnqm ] || fail "model file not written"
[ ! -e mlp_subset.nnqm.tmp ] || fail "temporary model file left behind"
# nnqc inspect: binary tensors stored at one bit a value (784 x 300 bits = 29400 bytes),
# and the model's size against float32 (weights 32x smaller; batch-norm statistics float)
"$NNQC" inspect mlp_subset.nnqm > inspect.txt || fail "nnqc inspect failed"
grep -q '^dense1.w *\[784, 300\]  29400 bytes  2 labels' inspect.txt || { cat inspect.txt; fail "dense1.w is not reported as 29400 bytes"; }
ratio=$(sed -n 's/^size: [0-9]* bytes of tensors, [0-9]* as float32 (\([0-9.]*\)x smaller)$/\1/p' inspect.txt)
ge "$ratio" 25 || { cat inspect.txt; fail "model size ratio '$ratio' against float32, expected >= 25"; }
echo "1 passed, 0 failed"
