#!/usr/bin/env bash
# Every example in examples/ compiles and trains (one epoch on a Fashion-MNIST subset;
# the CIFAR ones on synthetic CIFAR files, in cifar_examples.sh,
# checking it finishes with test accuracies and that `nnqc eval` of the saved model
# reproduces the hard test accuracy), and every ```nnq block in docs/ and the
# README compiles (`nnqc check`).
set -u
NNQC="$1"; SRC="$2"
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make_subset "$tmp" 3000 500
pass=0; fails=0
for ex in "$SRC"/examples/*.nnq; do
    name=$(basename "$ex" .nnq)
    if ! "$NNQC" check "$ex" > "$tmp/out.txt" 2>&1; then
        fails=$((fails + 1)); echo "FAIL check $name:"; cat "$tmp/out.txt"; continue
    fi
    case "$name" in cifar*) pass=$((pass + 1)); echo "ok   $name: checked (trained by e2e_cifar_examples)"; continue ;; esac
    (cd "$tmp" && "$NNQC" run "$ex" --data-dir "$tmp" --epochs 1 --progress=lines --metrics "$name.jsonl" > out.txt 2>&1)
    if [ $? -eq 0 ] && [ -n "$(json_field "$tmp/$name.jsonl" test_acc_hard)" ]; then
        pass=$((pass + 1)); echo "ok   $name: $(grep 'test accuracy' "$tmp/out.txt")"
        if msg=$(eval_agrees "$NNQC" "$tmp" "$ex" "$tmp/out.txt"); then pass=$((pass + 1)); echo "ok   $name: $msg"
        else fails=$((fails + 1)); echo "FAIL $name: $msg"; fi
    else
        fails=$((fails + 1)); echo "FAIL run $name:"; cat "$tmp/out.txt"
    fi
done
n=0
for md in "$SRC"/docs/*.md "$SRC"/README.md; do
    awk -v dir="$tmp" -v base="$(basename "$md" .md)" '
        /^```nnq/ { n++; file = sprintf("%s/doc_%s_%d.nnq", dir, base, n); inblock = 1; next }
        /^```/ && inblock { inblock = 0; close(file); next }
        inblock { print > file }' "$md"
done
for block in "$tmp"/doc_*.nnq; do
    [ -e "$block" ] || continue
    n=$((n + 1))
    if "$NNQC" check "$block" > "$tmp/out.txt" 2>&1; then pass=$((pass + 1))
    else fails=$((fails + 1)); echo "FAIL docs block $(basename "$block"):"; cat "$block"; cat "$tmp/out.txt"; fi
done
echo "checked $n documentation blocks"
echo "$pass passed, $fails failed"
[ $fails -eq 0 ]
