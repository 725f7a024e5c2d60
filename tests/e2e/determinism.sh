#!/usr/bin/env bash
# The same seed and thread count give bitwise-identical final weights (the saved model
# files compare equal, as do the printed accuracies); another seed gives other weights.
set -eu
NNQC="$1"; SRC="$2"
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make_subset "$tmp" 3000 500
sed -e 's/validation = 1000/validation = 500/' "$SRC/tests/e2e/mlp_subset.nnq" > "$tmp/det.nnq"
cd "$tmp"
for run in a b c; do
    seed=5; [ $run = c ] && seed=6
    "$NNQC" run det.nnq --data-dir "$tmp" --epochs 1 --threads 2 --seed $seed --progress=lines > $run.txt 2>&1 || { cat $run.txt; fail "run $run failed"; }
    mv mlp_subset.nnqm $run.nnqm
done
cmp a.nnqm b.nnqm || fail "same seed and threads gave different weights"
cmp -s a.nnqm c.nnqm && fail "a different seed gave identical weights"
[ "$(grep 'test accuracy' a.txt)" = "$(grep 'test accuracy' b.txt)" ] || fail "same seed gave different accuracies"
echo "2 passed, 0 failed"
