#!/usr/bin/env bash
# End-to-end numeric safety: relaxations.nnq's hand-written sigmoid, softmax and tanh
# train to beta = 1e4 (reached at iteration 23, then 70 more iterations there) on 2,000
# Fashion-MNIST images without a non-finite value: nnqc fails the run on a non-finite
# loss and on any non-finite weight, aux or optimizer moment at an epoch's end. Before
# the quotient rule went through forward values the sigmoid's gradient was 0 * inf = NaN
# from beta in the hundreds. The hard network must also learn (test accuracy >= 0.5;
# chance is 0.1).
set -eu
NNQC="$1"; SRC="$2"
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make_subset "$tmp" 2000 1000
cd "$tmp"
"$NNQC" run "$SRC/tests/e2e/relaxations.nnq" --data-dir "$tmp" --threads 2 --metrics m.jsonl \
    --progress=lines > out.txt 2>&1 || { cat out.txt; fail "training the relaxations failed"; }
cat out.txt
grep -q 'beta 1.00e+04' out.txt || fail "beta did not reach 1e4"
hard=$(json_field m.jsonl test_acc_hard)
[ -n "$hard" ] || fail "no final test accuracy"
ge "$hard" 0.5 || fail "hard-quantized test accuracy $hard < 0.5"
echo "1 passed, 0 failed"
