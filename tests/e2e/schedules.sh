#!/usr/bin/env bash
# Schedules as the recipe states them, read back from the metrics of a short run on a
# Fashion-MNIST subset (900 training images: 9 iterations per epoch):
#  - multistep(at = [1 epochs, 20 iterations], gamma = 0.1): lr 1e-2, 1e-3, 1e-4;
#  - anneal(start = 2, times = 1.5, every = 4 iterations, max = 10): beta after 9, 18,
#    27 iterations = 2*1.5^2 = 4.5, then 2*1.5^4 = 10.125 -> capped at 10, then 10;
#  - as many milestones and parameter groups as a recipe lists (until 2026-12-07 at most
#    16 of each): multistep at iterations 1 to 20, gamma 0.5, gives lr 0.5^8, 0.5^17,
#    0.5^20 after 9, 18, 27 iterations, and of 20 groups for every parameter the last
#    wins: the model saved is the one a single group with its lr trains, byte for byte.
set -eu
NNQC="$1"; SRC="$2"
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make_subset "$tmp" 1000 100
cat > "$tmp/s.nnq" <<'NNQ'
labels binary = {-1, +1}
model m(x: f32[1, 28, 28]) -> f32[10] {
    return dense(relu(dense(flatten(x), 32, quant = pmf(binary))), 10)
}
data d = idx("fashion-mnist/train-images-idx3-ubyte.gz", "fashion-mnist/train-labels-idx1-ubyte.gz")
train m on d {
    optimizer  = sgd(lr = 1e-2, momentum = 0.9, schedule = multistep(at = [1 epochs, 20 iterations], gamma = 0.1))
    beta       = anneal(start = 2, times = 1.5, every = 4 iterations, max = 10)
    epochs     = 3
    validation = 100
}
NNQ
cd "$tmp"
"$NNQC" run s.nnq --data-dir "$tmp" --metrics m.jsonl --progress=lines > out.txt 2>&1 || { cat out.txt; fail "run failed"; }
cat out.txt
field() { sed -n "$1p" m.jsonl | sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p"; }
near() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= 1e-6 * (b < 0 ? -b : b) + 1e-12) }'; }
pass=0
check() { if near "$(field "$1" "$2")" "$3"; then pass=$((pass + 1)); else fail "epoch $1: $2 is $(field "$1" "$2"), expected $3"; fi; }
check 1 lr 0.01; check 2 lr 0.001; check 3 lr 0.0001
check 1 beta 4.5; check 2 beta 10; check 3 beta 10

# many[ GROUPS]: the program with 20 milestones, and GROUPS groups (1: the last only)
many() {
    local ms g="" i
    ms=$(seq -s, 1 20 | sed 's/\([0-9]*\)/\1 iterations/g')
    for i in $(seq $((21 - $1)) 20); do g="$g    group = params(\"*\", lr = ${i}e-3)
"; done
    sed -e "s/multistep(at = \[1 epochs, 20 iterations\], gamma = 0.1)/multistep(at = [$ms], gamma = 0.5)/" \
        -e "s/validation = 100/validation = 100\n    save \"many$1.nnqm\"/" s.nnq | awk -v g="$g" '{ print } /^train m on d/ { printf "%s", g }'
}
many 20 > many20.nnq; many 1 > many1.nnq
"$NNQC" run many20.nnq --data-dir "$tmp" --metrics m.jsonl --progress=lines > out.txt 2>&1 || { cat out.txt; fail "20 milestones and groups: run failed"; }
check 1 lr 3.90625e-5; check 2 lr 7.62939453125e-8; check 3 lr 9.5367431640625e-9
"$NNQC" run many1.nnq --data-dir "$tmp" > out1.txt 2>&1 || { cat out1.txt; fail "one group: run failed"; }
cmp -s many20.nnqm many1.nnqm || fail "20 groups trained another model than their last alone"
pass=$((pass + 1))
echo "$pass passed, 0 failed"
