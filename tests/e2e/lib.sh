# tests/e2e/lib.sh — helpers for the end-to-end tests (sourced).
# make_subset DIR NTRAIN NTEST: writes DIR/fashion-mnist/*-idx*-ubyte.gz holding the
# first NTRAIN training and NTEST test samples of the real Fashion-MNIST files, in the
# real IDX format (uncompressed data under the .gz names: zlib reads both).
FMNIST="${FMNIST:-/usr/share/datasets/fashion-mnist}"

fail() { echo "FAIL: $*"; exit 1; }

# Scripts of many checks: ok / bad count each one and print it; they end with
# echo "$pass passed, $fails failed" and [ $fails = 0 ].
pass=0; fails=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fails=$((fails + 1)); echo "FAIL $*"; }

be32() { printf "\\x$(printf %02x $(($1 >> 24 & 255)))\\x$(printf %02x $(($1 >> 16 & 255)))\\x$(printf %02x $(($1 >> 8 & 255)))\\x$(printf %02x $(($1 & 255)))"; }

idx_head() { # SRC DST COUNT RECORD_BYTES HEADER_BYTES
    { gzip -dc "$1" 2>/dev/null || true; } | head -c $(($5 + $3 * $4)) > "$2"
    be32 "$3" | dd of="$2" bs=1 seek=4 conv=notrunc status=none
}

make_subset() {
    local d="$1/fashion-mnist"
    mkdir -p "$d"
    [ -f "$FMNIST/train-images-idx3-ubyte.gz" ] || fail "Fashion-MNIST not found in $FMNIST (apt-get install dataset-fashion-mnist)"
    idx_head "$FMNIST/train-images-idx3-ubyte.gz" "$d/train-images-idx3-ubyte.gz" "$2" 784 16
    idx_head "$FMNIST/train-labels-idx1-ubyte.gz" "$d/train-labels-idx1-ubyte.gz" "$2" 1 8
    idx_head "$FMNIST/t10k-images-idx3-ubyte.gz" "$d/t10k-images-idx3-ubyte.gz" "$3" 784 16
    idx_head "$FMNIST/t10k-labels-idx1-ubyte.gz" "$d/t10k-labels-idx1-ubyte.gz" "$3" 1 8
}

# json_field FILE KEY: the number KEY has in the final (last) line of a JSON Lines file.
json_field() { tail -n 1 "$1" | sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p"; }

# ge A B: A >= B as decimals (gt: >)
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }
gt() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 > b + 0) }'; }

# cpu_level: the widest $NNQ_ISA level this CPU runs (avx512, avx2 or portable), as
# runtime/isa.c's cpu_level reads it
cpu_level() {
    if grep -qw avx512f /proc/cpuinfo; then echo avx512
    elif grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then echo avx2
    else echo portable; fi
}

# eval_agrees NNQC DIR PROGRAM OUT: `nnqc eval` of the model PROGRAM saved in DIR, on the
# data set its train block evaluates, prints (with the packed engine, then with float
# weights) the hard test accuracy the training printed in OUT; a message otherwise.
eval_agrees() {
    local model data want got mode
    model=$(sed -n 's/^ *save "\(.*\)".*/\1/p' "$3")
    data=$(sed -n 's/^ *evaluate \([A-Za-z_0-9]*\).*/\1/p' "$3")
    want=$(sed -n 's/^test accuracy: hard \([0-9.]*\).*/\1/p' "$4")
    for mode in --threads=2 --float; do
        got=$(cd "$2" && "$1" eval "$model" --data "$data" "$3" --data-dir "$2" $mode 2>&1 |
              sed -n 's/^accuracy \([0-9.]*\).*/\1/p')
        if [ -z "$want" ] || [ "$got" != "$want" ]; then
            echo "nnqc eval $model $mode: accuracy '$got'; the training printed '$want'"
            return 1
        fi
    done
    echo "nnqc eval $model (packed and float) agrees: $want"
}
