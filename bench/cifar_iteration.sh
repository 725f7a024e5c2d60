#!/usr/bin/env bash
# bench/cifar_iteration.sh NNQC MAKE_CIFAR [RECORDS_PER_FILE] — what one training
# iteration of the CIFAR-10 examples costs on this machine, at their batch of 128.
# Trains each examples/cifar10_*.nnq for one epoch on synthetic data in the real CIFAR
# format (build/tests/e2e/make_cifar; 5 files of RECORDS_PER_FILE records, default 1024:
# half of them are the validation split, so 20 iterations) and prints seconds per
# iteration and images per second, plus the projected time of the examples' 100k
# iterations and of one CIFAR-10 epoch (45,000 training images). Timed from the
# metrics' iter_seconds: batching, augmentation and the steps, not the validation pass.
set -eu
NNQC="$1"; MAKE_CIFAR="$2"; PER="${3:-1024}"
here="$(cd "$(dirname "$0")" && pwd)"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/cifar-10-batches-bin"
"$MAKE_CIFAR" "$tmp/cifar-10-batches-bin" 10 "$PER" 256
printf '| example | batch | s / iteration | images / s | CIFAR-10 epoch | 100k iterations |\n|---|---|---|---|---|---|\n'
for ex in "$here"/../examples/cifar10_*.nnq; do
    name=$(basename "$ex" .nnq)
    batch=$(sed -n 's/^ *batch *= *\([0-9]*\).*/\1/p' "$ex")
    sed '/^ *checkpoint /d' "$ex" > "$tmp/$name.nnq"     # no 0.5 GB checkpoint per run
    (cd "$tmp" && "$NNQC" run "$name.nnq" --data-dir "$tmp" --epochs 1 --progress=lines --metrics "$name.jsonl" > "$name.out" 2>&1) \
        || { echo "| $name | failed: $(tail -1 "$tmp/$name.out") |"; continue; }
    secs=$(head -1 "$tmp/$name.jsonl" | sed -n 's/.*"iter_seconds":\([0-9.]*\).*/\1/p')
    iters=$(( (5 * PER - 5 * PER / 2) / batch ))
    awk -v s="$secs" -v i="$iters" -v b="$batch" -v n="$name" 'BEGIN {
        per = s / i
        printf "| %s | %d | %.2f | %.0f | %.1f min | %.1f h |\n", n, b, per, b / per, per * 45000 / b / 60, per * 100000 / 3600 }'
done
