#!/usr/bin/env bash
# End-to-end: `init from "DIR"` starts training from float weights in .npy files
# (DIR/<tensor name>.npy, as `nnqc export --format npy` writes them, which is how this
# test makes them from a saved model):
#  - a float model trained and saved, its tensors written as .npy files, then read by a
#    program with `epochs = 0`, saves the very same model file with the same test
#    accuracies (weights and batch-norm statistics are read; the init kernels run);
#  - the same for a binary (pmf) model: the init kernel maps the ±1 weights to aux
#    variables whose hard weights are those ±1;
#  - batch-norm files are optional; DIR is found from the program's directory; a trainer
#    built with `nnqc build` reads them alike;
#  - training from the read weights differs from training from random ones;
#  - --resume restores the checkpoint and reads nothing (the files may be gone);
#  - under mpirun every rank reads the files; ranks that read different values fail;
#  - bad files fail with `nnqc: error:` naming the file and what is wrong, exit 1, and
#    leave an existing model file as it was.
set -u
NNQC="$1"; SRC="$2"; MPI="${3:-mpi}" # no-mpi: skip the mpirun cases
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make_subset "$tmp" 2000 500
cd "$tmp"

# prog DIR QUANT EPOCHS [STATEMENT...]: DIR/p.nnq, a small MLP with batch norm
prog() {
    local d=$1 q=$2 e=$3; shift 3
    mkdir -p "$d"
    {
        echo 'labels binary = {-1, +1}'
        echo 'model m(x: f32[1, 28, 28]) -> f32[10] {'
        echo "    h = relu(batchnorm(dense(flatten(x), 64, quant = $q)))"
        echo "    return dense(h, 10, quant = $q)"
        echo '}'
        echo 'data train = idx("fashion-mnist/train-images-idx3-ubyte.gz", "fashion-mnist/train-labels-idx1-ubyte.gz", normalize = standard)'
        echo 'data test  = idx("fashion-mnist/t10k-images-idx3-ubyte.gz", "fashion-mnist/t10k-labels-idx1-ubyte.gz", normalize = like(train))'
        echo 'train m on train {'
        echo "    epochs     = $e"
        echo '    seed       = 3'
        echo '    validation = 500'
        echo '    calibrate  = 0'
        echo '    evaluate test'
        echo '    save "model.nnqm"'
        for s in "$@"; do echo "    $s"; done
        echo '}'
    } > "$d/p.nnq"
}
# run DIR [nnqc options]: nnqc run DIR/p.nnq in DIR; false (output shown) on failure
run() {
    local d=$1; shift
    (cd "$d" && "$NNQC" run p.nnq --data-dir "$tmp" --progress=lines --metrics m.jsonl "$@" > out.txt 2>&1) \
        || { cat "$d/out.txt"; return 1; }
}
data_at() { echo $((10 + $(od -An -tu2 -j8 -N2 "$1" | tr -d ' '))); } # FILE: where a .npy 1.0 array starts
same_acc() { # A B: the same final test accuracies
    [ "$(json_field "$1/m.jsonl" test_acc_hard)" = "$(json_field "$2/m.jsonl" test_acc_hard)" ] &&
    [ "$(json_field "$1/m.jsonl" test_acc_soft)" = "$(json_field "$2/m.jsonl" test_acc_soft)" ]
}

# ---- a trained float model, written as .npy files, read back without training ----
prog a float 2
run a || fail "training the float model failed"
"$NNQC" export a/model.nnqm --format npy -o w > /dev/null || fail "nnqc export --format npy failed"
[ -f w/dense1.w.npy ] && [ -f w/bn1.running_var.npy ] || fail "nnqc export wrote $(ls w)"
prog b float 0 'init from "w"'
if run b; then
    cmp -s a/model.nnqm b/model.nnqm && same_acc a b \
        && ok "epochs = 0 from the .npy files saves the trained model byte for byte (test accuracy $(json_field b/m.jsonl test_acc_hard))" \
        || bad "epochs = 0 from the .npy files: another model or accuracy ($(json_field a/m.jsonl test_acc_hard) / $(json_field b/m.jsonl test_acc_hard))"
    grep -q 'note: initial weights of 4 parameters read from "w" (init from)' b/out.txt \
        && ok "the run says where its weights come from" || { cat b/out.txt; bad "no note on the initial weights"; }
else
    bad "init from failed"
fi

# the binary network of a pmf model: ±1 in the files, the same hard model back
prog qa 'pmf(binary)' 1
run qa || fail "training the binary model failed"
"$NNQC" export qa/model.nnqm --format npy -o wq > /dev/null || fail "nnqc export --format npy failed"
prog qb 'pmf(binary)' 0 'init from "wq"'
run qb && cmp -s qa/model.nnqm qb/model.nnqm && [ "$(json_field qa/m.jsonl test_acc_hard)" = "$(json_field qb/m.jsonl test_acc_hard)" ] \
    && ok "a binary model's ±1 weights read back give its hard model byte for byte" \
    || bad "a binary model read back differs"

# batch-norm statistics are optional (without them: the fresh ones, another model)
mkdir -p wn && cp w/dense*.npy wn/
prog nobn float 0 'init from "wn"'
if run nobn; then
    ! cmp -s a/model.nnqm nobn/model.nnqm && ok "batch-norm files are optional, and read when present" \
        || bad "the batch-norm statistics made no difference"
else
    bad "a directory without batch-norm files failed"
fi

# DIR is found from the program's directory too (not on --data-dir, not in the cwd)
prog c float 0 'init from "wlocal"'
cp -r w c/wlocal && mkdir -p elsewhere
if (cd elsewhere && "$NNQC" run ../c/p.nnq --data-dir "$tmp" --progress=lines > out.txt 2>&1); then
    cmp -s a/model.nnqm elsewhere/model.nnqm && ok "DIR is found in the program's directory" || bad "DIR from the program's directory: another model"
else
    cat elsewhere/out.txt; bad "DIR was not found in the program's directory"
fi

# a trainer built with nnqc build reads them alike
mkdir -p t
if "$NNQC" build b/p.nnq -o t/trainer > t/build.txt 2>&1 && (cd t && ./trainer --data-dir "$tmp" --progress=lines > out.txt 2>&1); then
    cmp -s a/model.nnqm t/model.nnqm && ok "a built trainer reads the initial weights" || bad "the built trainer saved another model"
else
    cat t/build.txt t/out.txt 2>/dev/null; bad "the built trainer failed"
fi

# training from the read weights differs from training from random ones
prog f float 1 'init from "w"'
prog g float 1
if run f && run g; then
    ! cmp -s f/model.nnqm g/model.nnqm && ok "training from the read weights differs from random initialization" \
        || bad "init from made no difference to training"
else
    bad "training from the read weights failed"
fi

# --resume: the checkpoint wins and nothing is read (the files may be gone)
cp -r w wr
prog r float 2 'init from "wr"' 'checkpoint "ck"'
if run r && mv r/model.nnqm r/full.nnqm && rm -rf r/ck && run r --epochs 1 && mv wr wr.gone && run r --resume ck; then
    cmp -s r/full.nnqm r/model.nnqm && ok "--resume restores the checkpoint without reading the .npy files" \
        || bad "--resume after init from: another model than the uninterrupted run"
else
    bad "--resume of a run with init from failed"
fi
mv wr.gone wr 2>/dev/null

# ---- data-parallel: every rank reads the files ----
if [ "$MPI" = no-mpi ]; then
    echo "skip the mpirun cases (a sanitized build: LeakSanitizer reports Open MPI's allocations)"
elif command -v mpirun > /dev/null; then
    export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
    prog mp float 0 'init from "w"'
    if (cd mp && timeout 120 mpirun -np 2 "$NNQC" run p.nnq --data-dir "$tmp" --progress=lines > out.txt 2>&1); then
        cmp -s a/model.nnqm mp/model.nnqm && ok "mpirun -np 2: every rank reads the weights (the same model)" || bad "mpirun -np 2 saved another model"
    else
        cat mp/out.txt; bad "mpirun -np 2 with init from failed"
    fi
    # rank 1 finds another w (on its --data-dir) with one value changed
    mkdir -p other/w && ln -s ../fashion-mnist other/fashion-mnist && cp w/* other/w/ && printf '\x00\x00\x80\x3f' | dd of=other/w/dense2.b.npy bs=1 seek=$(data_at w/dense2.b.npy) conv=notrunc status=none
    (cd mp && timeout 120 mpirun -np 1 "$NNQC" run p.nnq --data-dir "$tmp" : -np 1 "$NNQC" run p.nnq --data-dir "$tmp/other" > bad.txt 2>&1)
    rc=$?
    [ $rc != 0 ] && [ $rc != 124 ] && grep -q "read different initial weights from '.*dense2.b.npy'" mp/bad.txt \
        && ok "ranks that read different weights fail: exit $rc" || { cat mp/bad.txt; bad "ranks with different weights: exit $rc"; }
else
    echo "skip mpirun not found"
fi

# ---- bad files: exit 1, the file named, the model file left as it was ----
prog e float 0 'init from "we"'
cp a/model.nnqm keep.nnqm
npy_file() { # OUT DESCR SHAPE FORTRAN BYTES: a .npy (format 1.0) of BYTES zero bytes
    local dict="{'descr': '$2', 'fortran_order': $4, 'shape': $3, }"
    local len=$(( (10 + ${#dict} + 1 + 63) / 64 * 64 - 10 ))
    { printf '\x93NUMPY\x01\x00'; printf "\\x$(printf %02x $((len & 255)))\\x$(printf %02x $((len >> 8)))"
      printf '%s' "$dict"; printf '%*s' $((len - ${#dict} - 1)) ''; printf '\n'; head -c "$5" /dev/zero; } > "$1"
}
# expect NAME PATTERN FILE SETUP: SETUP breaks we/FILE (a copy of w); the run must fail
expect() {
    local name=$1 pat=$2 file=$3 setup=$4
    rm -rf we && cp -r w we && (cd we && eval "$setup") && cp keep.nnqm e/model.nnqm
    (cd e && "$NNQC" run p.nnq --data-dir "$tmp" --progress=lines > out.txt 2>&1); local rc=$?
    if [ $rc != 1 ]; then cat e/out.txt; bad "$name: exit $rc, expected 1"
    elif ! grep -q "^nnqc: error: .*$pat" e/out.txt || ! grep -q "we/$file" e/out.txt; then
        cat e/out.txt; bad "$name: no message naming we/$file with '$pat'"
    elif ! cmp -s keep.nnqm e/model.nnqm; then bad "$name: the model file changed"
    else ok "$name: $(grep -m1 'error' e/out.txt | cut -c1-150)"; fi
}
expect "a missing file" "cannot open '.*', the initial weights of dense2.b (shape (10,)): No such file" dense2.b.npy 'rm dense2.b.npy'
expect "not a .npy file" "is not a .npy file" dense1.b.npy 'printf junk > dense1.b.npy'
expect "an empty file" "it is empty" dense1.b.npy ': > dense1.b.npy'
expect "float64" "has dtype '<f8'; the initial weights of dense1.w must be float32" dense1.w.npy \
    'npy_file dense1.w.npy "<f8" "(784, 64)" False $((784 * 64 * 8))'
expect "big-endian" "has dtype '>f4'" dense1.w.npy 'npy_file dense1.w.npy ">f4" "(784, 64)" False $((784 * 64 * 4))'
expect "Fortran order" "Fortran (column-major) order" dense1.w.npy 'npy_file dense1.w.npy "<f4" "(784, 64)" True $((784 * 64 * 4))'
expect "a transposed shape" "has shape (64, 784); expected (784, 64), the shape of dense1.w" dense1.w.npy \
    'npy_file dense1.w.npy "<f4" "(64, 784)" False $((784 * 64 * 4))'
expect "a flattened shape" "has shape (50176,); expected (784, 64)" dense1.w.npy 'npy_file dense1.w.npy "<f4" "(50176,)" False $((784 * 64 * 4))'
expect "a truncated array" "is truncated: expected 200704 bytes of data" dense1.w.npy 'head -c -6 ../w/dense1.w.npy > dense1.w.npy'
expect "a truncated header" "is truncated" dense1.w.npy 'head -c 40 ../w/dense1.w.npy > dense1.w.npy'
expect "trailing bytes" "has 3 unexpected bytes after the array" dense2.w.npy 'printf abc >> dense2.w.npy'
expect "a NaN" "has the non-finite value nan at index 17 (of 50176 values of dense1.w)" dense1.w.npy \
    "printf '\\x00\\x00\\xc0\\x7f' | dd of=dense1.w.npy bs=1 seek=\$((\$(data_at dense1.w.npy) + 68)) conv=notrunc status=none"
expect "an infinity" "non-finite value inf at index 0" dense2.b.npy \
    "printf '\\x00\\x00\\x80\\x7f' | dd of=dense2.b.npy bs=1 seek=\$(data_at dense2.b.npy) conv=notrunc status=none"
expect "a negative variance" "has the negative variance -1 at index 0" bn1.running_var.npy \
    "printf '\\x00\\x00\\x80\\xbf' | dd of=bn1.running_var.npy bs=1 seek=\$(data_at bn1.running_var.npy) conv=notrunc status=none"
expect "a malformed header" "malformed .npy header" dense1.b.npy \
    "npy_file dense1.b.npy '<f4' '(64' False 256"
expect "a directory in place of a file" "is a directory, not the .npy file of dense1.b" dense1.b.npy 'rm dense1.b.npy && mkdir dense1.b.npy'
rm -rf we && cp keep.nnqm e/model.nnqm
(cd e && "$NNQC" run p.nnq --data-dir "$tmp" --progress=lines > out.txt 2>&1); rc=$?
[ $rc = 1 ] && grep -q "nnqc: error: cannot find \`init from\` directory 'we'; tried: .*/we (--data-dir)" e/out.txt && cmp -s keep.nnqm e/model.nnqm \
    && ok "a missing directory: $(grep -m1 error e/out.txt | cut -c1-150)" || { cat e/out.txt; bad "a missing directory: exit $rc"; }

echo "$pass passed, $fails failed"
[ $fails = 0 ]
