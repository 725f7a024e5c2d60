#!/usr/bin/env bash
# The CIFAR-10 examples (VGG-16 with PMF, ResNet-18 and MobileNetV2 with MD-tanh-S; the
# last with depthwise convolutions) train on synthetic
# data in the real CIFAR binary format: two epochs of five iterations each at batch 32
# (the examples' batch of 128 would take minutes here), with the examples' own
# augmentation and normalization, without their checkpoints. Checks: the run finishes,
# the training loss falls from the first epoch to the second, the test accuracy is
# reported, and `nnqc eval` of the saved model reproduces it.
set -u
NNQC="$1"; SRC="$2"; MAKE_CIFAR="$3"
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/cifar-10-batches-bin"
"$MAKE_CIFAR" "$tmp/cifar-10-batches-bin" 10 64 64 || fail "make_cifar"
fails=0
for ex in "$SRC"/examples/cifar10_*.nnq; do
    name=$(basename "$ex" .nnq)
    # (their per-epoch checkpoints, some 0.5 GB each, are left to tests/e2e/checkpoint.sh)
    sed -e 's/batch *= *128/batch = 32/' -e '/^ *checkpoint /d' "$ex" > "$tmp/$name.nnq"
    grep -q 'batch = 32' "$tmp/$name.nnq" || fail "$name: no 'batch = 128' to shrink"
    if ! (cd "$tmp" && "$NNQC" run "$name.nnq" --data-dir "$tmp" --epochs 2 --progress=lines \
            --metrics "$name.jsonl" > "$name.out" 2>&1); then
        fails=$((fails + 1)); echo "FAIL run $name:"; cat "$tmp/$name.out"; continue
    fi
    l1=$(sed -n 1p "$tmp/$name.jsonl" | sed -n 's/.*"train_loss":\([-0-9.eE+]*\).*/\1/p')
    l2=$(sed -n 2p "$tmp/$name.jsonl" | sed -n 's/.*"train_loss":\([-0-9.eE+]*\).*/\1/p')
    acc=$(json_field "$tmp/$name.jsonl" test_acc_hard)
    echo "$name: train loss $l1 -> $l2, hard test accuracy $acc"
    if [ -z "$l1" ] || [ -z "$l2" ] || [ -z "$acc" ] || ge "$l2" "$l1"; then
        fails=$((fails + 1)); echo "FAIL $name: the loss did not fall"; cat "$tmp/$name.out"
    fi
    if msg=$(eval_agrees "$NNQC" "$tmp" "$tmp/$name.nnq" "$tmp/$name.out"); then echo "$name: $msg"
    else fails=$((fails + 1)); echo "FAIL $name: $msg"; fi
    # the same files named on the command line: --cifar DIR (the test split)
    model=$(sed -n 's/^ *save "\(.*\)".*/\1/p' "$tmp/$name.nnq")
    want=$(sed -n 's/^test accuracy: hard \([0-9.]*\).*/\1/p' "$tmp/$name.out")
    got=$("$NNQC" eval "$tmp/$model" --cifar "$tmp/cifar-10-batches-bin" | sed -n 's/^accuracy \([0-9.]*\).*/\1/p')
    if [ -n "$want" ] && [ "$got" = "$want" ]; then echo "$name: nnqc eval --cifar agrees: $got"
    else fails=$((fails + 1)); echo "FAIL $name: nnqc eval --cifar: '$got', the training printed '$want'"; fi
    # predict --cifar: a class per test image, right as often as eval counts (make_cifar's
    # labels cycle through the classes: image i is class i mod 10)
    "$NNQC" predict "$tmp/$model" --cifar "$tmp/cifar-10-batches-bin" > "$tmp/$name.pred" 2>&1
    right=$(awk '$1 == (NR - 1) % 10 { r++ } END { printf "%.4f", r / NR }' "$tmp/$name.pred")
    if [ "$(wc -l < "$tmp/$name.pred")" = 64 ] && [ "$right" = "$got" ]; then echo "$name: nnqc predict --cifar agrees: $right"
    else fails=$((fails + 1)); echo "FAIL $name: nnqc predict --cifar: $(wc -l < "$tmp/$name.pred") lines, $right right, eval $got"; fi
done
[ $fails -eq 0 ]
