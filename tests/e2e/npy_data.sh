#!/usr/bin/env bash
# End-to-end: the same Fashion-MNIST subset as IDX files and as NumPy .npy files (uint8
# images [N, 28, 28] and labels [N], written here in the .npy format) trains to the very
# same model: `npy(...)` must feed the network exactly what `idx(...)` does. Also checks
# that augmentation changes training (and is reproducible), and that a .npy error
# names the file.
set -eu
NNQC="$1"; SRC="$2"
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make_subset "$tmp" 3000 500
cd "$tmp"

# npy_u8 OUT SHAPE BYTES_FILE: a version 1.0 .npy of uint8 with the given shape tuple
npy_u8() {
    local dict="{'descr': '|u1', 'fortran_order': False, 'shape': $2, }"
    local len=$(( (10 + ${#dict} + 1 + 63) / 64 * 64 - 10 ))
    { printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $((len & 255)))\\x$(printf %02x $((len >> 8)))"
      printf '%s' "$dict"; printf '%*s' $((len - ${#dict} - 1)) ''; printf '\n'; cat "$3"; } > "$1"
}
for part in train:3000 t10k:500; do
    name=${part%%:*}; n=${part##*:}
    gzip -dcf "fashion-mnist/$name-images-idx3-ubyte.gz" 2>/dev/null | tail -c +17 > img.raw || true
    gzip -dcf "fashion-mnist/$name-labels-idx1-ubyte.gz" 2>/dev/null | tail -c +9 > lab.raw || true
    [ "$(wc -c < img.raw)" -eq $((n * 784)) ] || fail "subset $name has $(wc -c < img.raw) pixel bytes"
    npy_u8 "$name-images.npy" "($n, 28, 28)" img.raw
    npy_u8 "$name-labels.npy" "($n,)" lab.raw
done

write_prog() { # OUT SOURCE_TRAIN SOURCE_TEST [AUGMENT]
    sed -e '/^data /,/^$/d' "$SRC/tests/e2e/mlp_subset.nnq" | sed -e 's/epochs     = 8/epochs     = 4/' \
        -e 's/validation = 1000/validation = 500/' -e 's/save "mlp_subset.nnqm"/save "model.nnqm"/' > "$1"
    { echo "data train = $2"; echo "data test = $3"; } >> "$1"
}
IDX_TRAIN='idx("fashion-mnist/train-images-idx3-ubyte.gz", "fashion-mnist/train-labels-idx1-ubyte.gz", normalize = standard)'
IDX_TEST='idx("fashion-mnist/t10k-images-idx3-ubyte.gz", "fashion-mnist/t10k-labels-idx1-ubyte.gz", normalize = like(train))'
NPY_TRAIN='npy("train-images.npy", "train-labels.npy", normalize = standard)'
NPY_TEST='npy("t10k-images.npy", "t10k-labels.npy", normalize = like(train))'
AUG_TRAIN='idx("fashion-mnist/train-images-idx3-ubyte.gz", "fashion-mnist/train-labels-idx1-ubyte.gz", normalize = standard, augment = [random_crop(28, pad = 2), hflip])'

run_prog() { # NAME SOURCE_TRAIN SOURCE_TEST
    mkdir -p "$1"; write_prog "$1/p.nnq" "$2" "$3"
    (cd "$1" && "$NNQC" run p.nnq --data-dir "$tmp" --threads 1 --metrics m.jsonl --progress=lines > out.txt 2>&1) \
        || { cat "$1/out.txt"; fail "$1: nnqc run failed"; }
}
run_prog idx "$IDX_TRAIN" "$IDX_TEST"
run_prog npy "$NPY_TRAIN" "$IDX_TEST"
run_prog npy2 "$NPY_TRAIN" "$NPY_TEST"
cmp -s idx/model.nnqm npy/model.nnqm || fail "npy() training data gave another model than idx()"
cmp -s idx/model.nnqm npy2/model.nnqm || fail "npy() test data changed the model"
[ "$(json_field idx/m.jsonl test_acc_hard)" = "$(json_field npy2/m.jsonl test_acc_hard)" ] \
    || fail "npy() test data gave another test accuracy"
echo "ok   .npy data trains the same model as IDX (test accuracy $(json_field npy2/m.jsonl test_acc_hard))"

run_prog aug "$AUG_TRAIN" "$IDX_TEST"
run_prog aug2 "$AUG_TRAIN" "$IDX_TEST"
! cmp -s idx/model.nnqm aug/model.nnqm || fail "augmentation did not change training"
cmp -s aug/model.nnqm aug2/model.nnqm || fail "augmented training is not reproducible"
acc=$(json_field aug/m.jsonl test_acc_hard)
ge "$acc" 0.5 || fail "augmented training reached only $acc"
echo "ok   augmented training differs, is reproducible, reaches $acc"

printf 'junk' > bad.npy
mkdir -p bad; write_prog bad/p.nnq 'npy("bad.npy", "train-labels.npy", normalize = standard)' "$IDX_TEST"
if (cd bad && "$NNQC" run p.nnq --data-dir "$tmp" > out.txt 2>&1); then fail "a bad .npy file was accepted"; fi
grep -q "bad.npy" bad/out.txt || { cat bad/out.txt bad/p.nnq; fail "the error does not name the file"; }
echo "ok   bad .npy: $(grep error bad/out.txt | head -1)"
