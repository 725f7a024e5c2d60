#!/usr/bin/env bash
# bench/methods_table.sh NNQC [EPOCHS] — trains the Fashion-MNIST MLP (LeNet-300-100
# with batch norm) with every method of std.projections on the full data and prints a
# Markdown table: hard-quantized and soft test accuracy, best epoch, seconds per epoch.
# Each method's recipe is bench/methods/NAME.nnq (only the quantizer and its beta
# schedule differ; all share bench/methods/common.nnq). About 10-20 s per method for
# 10 epochs on 2 cores.
set -eu
NNQC="$1"; EPOCHS="${2:-10}"
here="$(cd "$(dirname "$0")" && pwd)"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
printf '| method | labels | recipe | hard test | soft test | epoch time |\n|---|---|---|---|---|---|\n'
for f in "$here"/methods/*.nnq; do
    name=$(basename "$f" .nnq)
    [ "$name" = common ] && continue
    # quant and beta lines come from the method file; the rest from common.nnq
    quant=$(sed -n 's/^# quant: //p' "$f"); beta=$(sed -n 's/^# beta: //p' "$f"); labels=$(sed -n 's/^# labels: //p' "$f")
    sed -e "s|@QUANT@|$quant|g" -e "s|@BETA@|$beta|" -e "s|@LABELS@|$labels|" "$here/methods/common.nnq" > "$tmp/$name.nnq"
    "$NNQC" run "$tmp/$name.nnq" --epochs "$EPOCHS" --progress=lines --metrics "$tmp/$name.jsonl" > "$tmp/$name.out" 2>&1 || { echo "| $name | failed: $(tail -1 "$tmp/$name.out") |"; continue; }
    hard=$(tail -1 "$tmp/$name.jsonl" | sed -n 's/.*"test_acc_hard":\([0-9.]*\).*/\1/p')
    soft=$(tail -1 "$tmp/$name.jsonl" | sed -n 's/.*"test_acc_soft":\([0-9.]*\).*/\1/p')
    secs=$(tail -1 "$tmp/$name.jsonl" | sed -n 's/.*"train_seconds":\([0-9.]*\).*/\1/p')
    per=$(awk -v s="$secs" -v e="$EPOCHS" 'BEGIN { printf "%.1f s", s / e }')
    printf '| %s | %s | `%s`, beta `%s` | %s | %s | %s |\n' "$name" "$labels" "$quant" "$beta" "$hard" "$soft" "$per"
done
