#!/usr/bin/env bash
# Checkpoints and --resume, end to end, with every kind of state a run carries (Adam
# moments, batch norm, dropout, augmentation, an lr schedule in epochs, annealed beta,
# keep = best, per-epoch test evaluation):
#  - k epochs, then --resume to N, gives bit for bit the uninterrupted N-epoch run: the
#    same saved model and the same epoch lines and metrics for epochs k+1..N;
#  - a run killed (SIGKILL) after its first checkpoint resumes to the same model;
#  - resuming a finished run trains nothing and saves the same model;
#  - a checkpoint of another program, a truncated or corrupt one, one from beyond
#    --epochs and a missing one are refused naming the file; an unusable checkpoint
#    directory fails at once, naming it; all with exit status 1.
set -u
NNQC="$1"; SRC="$2"
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make_subset "$tmp" 3000 500
cd "$tmp"
pass=0; fails=0
ok() { pass=$((pass + 1)); echo "ok   $*"; }
bad() { fails=$((fails + 1)); echo "FAIL $*"; }

program() { # OUT HIDDEN EPOCHS CHECKPOINT_DIR
    cat > "$1" <<EOF
import std.projections
labels binary = {-1, +1}
model mlp(x: f32[1, 28, 28]) -> f32[10] {
    h = relu(batchnorm(dense(flatten(x), $2, quant = pmf(binary))))
    return dense(dropout(h, 0.2), 10, quant = pmf(binary))
}
data train = idx("fashion-mnist/train-images-idx3-ubyte.gz",
                 "fashion-mnist/train-labels-idx1-ubyte.gz", normalize = standard,
                 augment = [random_crop(28, pad = 2), hflip])
data test  = idx("fashion-mnist/t10k-images-idx3-ubyte.gz",
                 "fashion-mnist/t10k-labels-idx1-ubyte.gz", normalize = like(train))
train mlp on train {
    optimizer  = adam(lr = 2e-3, schedule = step(every = 1 epoch, gamma = 0.7))
    beta       = anneal(start = 1.0, times = 1.1, every = 5 iterations, max = 1e4)
    epochs     = $3
    batch      = 50
    seed       = 3
    validation = 500
    calibrate  = 500
    keep       = best
    evaluate test every 1 epoch
    checkpoint "$4" every 1 epoch
    save "model.nnqm"
}
EOF
}

# train NAME FILE [args]: runs in NAME/ (model NAME/model.nnqm, metrics NAME/m.jsonl,
# output NAME/out.txt); returns nnqc's status.
train() {
    local name="$1" file="$2"; shift 2
    mkdir -p "$name"
    (cd "$name" && "$NNQC" run "../$file" --data-dir "$tmp" --threads 2 --progress=lines \
        --metrics m.jsonl "$@" > out.txt 2>&1)
}
# Epoch lines and metrics objects without their timings, from epoch $2 on.
epochs_from() { grep '^epoch ' "$1/out.txt" | sed 's/  [0-9.]*s$//' | awk -v k="$2" '{ split($2, e, "/"); if (e[1] >= k) print }'; }
metrics_from() { grep '"epoch"' "$1/m.jsonl" | sed 's/,"seconds":[^,]*,"iter_seconds":[^}]*//' | awk -v k="$2" -F'[:,]' '$2 >= k'; }

program p.nnq 64 5 ck
train full p.nnq || { cat full/out.txt; fail "the uninterrupted run failed"; }
[ -f full/ck/checkpoint.nnqc ] && [ ! -e full/ck/checkpoint.nnqc.tmp ] || fail "no checkpoint written"
[ "$(epochs_from full 1 | wc -l)" -eq 5 ] || { cat full/out.txt; fail "expected 5 epoch lines"; }

# interrupted after epoch 2 (a 2-epoch run), then resumed to the program's 5 epochs
train part p.nnq --epochs 2 || { cat part/out.txt; fail "the 2-epoch run failed"; }
train part p.nnq --resume ck || { cat part/out.txt; fail "the resumed run failed"; }
grep -q "resuming from checkpoint 'ck/checkpoint.nnqc' after epoch 2 of 5" part/out.txt \
    || { cat part/out.txt; bad "no resume note"; }
if cmp -s full/model.nnqm part/model.nnqm; then ok "resumed after epoch 2: the same model, bit for bit"
else bad "resumed after epoch 2: the model differs from the uninterrupted run's"; fi
if [ "$(epochs_from part 1)" = "$(epochs_from full 3)" ] && [ -n "$(epochs_from part 1)" ]; then
    ok "epoch lines 3-5 identical"
else bad "epoch lines differ:"; epochs_from full 3; echo "--- resumed:"; epochs_from part 1; fi
if [ "$(metrics_from part 1)" = "$(metrics_from full 3)" ] \
    && [ "$(json_field part/m.jsonl test_acc_hard)" = "$(json_field full/m.jsonl test_acc_hard)" ]; then
    ok "metrics of epochs 3-5 and the final test accuracy identical"
else bad "metrics differ"; metrics_from full 3; echo "--- resumed:"; metrics_from part 1; fi

# a real interruption: SIGKILL once the first epoch line is out (and so, soon, a checkpoint)
program long.nnq 64 12 ck
train longfull long.nnq || { cat longfull/out.txt; fail "the 12-epoch run failed"; }
mkdir -p kill
(cd kill && exec "$NNQC" run ../long.nnq --data-dir "$tmp" --threads 2 --progress=lines > out.txt 2>&1) &
pid=$!
for _ in $(seq 1 3000); do
    [ -f kill/ck/checkpoint.nnqc ] && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.01
done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
[ -f kill/ck/checkpoint.nnqc ] || { cat kill/out.txt; fail "the killed run left no checkpoint"; }
[ ! -e kill/ck/checkpoint.nnqc.tmp ] || echo "note: the kill left a .tmp (it was writing)"
train kill long.nnq --resume ck || { cat kill/out.txt; fail "resuming the killed run failed"; }
at=$(sed -n "s/.*after epoch \([0-9]*\) of 12/\1/p" kill/out.txt)
if cmp -s longfull/model.nnqm kill/model.nnqm; then ok "killed, resumed after epoch ${at:-12}: the same model"
else bad "killed and resumed after epoch $at: the model differs"; fi

# resuming a finished run: nothing to train, the same final model
train done p.nnq --resume "$tmp/full/ck" || { cat done/out.txt; fail "resuming a finished run failed"; }
if grep -q "nothing left to train" done/out.txt && ! grep -q '^epoch ' done/out.txt \
    && cmp -s full/model.nnqm done/model.nnqm; then ok "a finished run: nothing trained, the same model"
else bad "resuming a finished run"; cat done/out.txt; fi

# expect_error NAME PATTERN FILE [args]: exit 1 with PATTERN in the output
expect_error() {
    local name="$1" pattern="$2" file="$3"; shift 3
    train "err_$name" "$file" "$@"
    local rc=$?
    if [ $rc -eq 1 ] && grep -q -- "$pattern" "err_$name/out.txt"; then ok "$name: $(grep error "err_$name/out.txt")"
    else bad "$name: exit $rc, expected 1 and '$pattern' in:"; cat "err_$name/out.txt"; fi
}
program other.nnq 32 5 ck
expect_error other-program "checkpoint '$tmp/full/ck/checkpoint.nnqc' was written by a different program: .*dense1.w" \
    other.nnq --resume "$tmp/full/ck"
expect_error fewer-epochs "written after epoch 5, but this run has 3 epochs" p.nnq --resume "$tmp/full/ck" --epochs 3
mkdir -p cut flip
size=$(wc -c < full/ck/checkpoint.nnqc)
head -c $((size - 100)) full/ck/checkpoint.nnqc > cut/checkpoint.nnqc
expect_error truncated "checkpoint '$tmp/cut/checkpoint.nnqc' is truncated" p.nnq --resume "$tmp/cut"
cp full/ck/checkpoint.nnqc flip/checkpoint.nnqc
printf '\x5a' | dd of=flip/checkpoint.nnqc bs=1 seek=$((size / 2)) conv=notrunc status=none
expect_error corrupt "checkpoint '$tmp/flip/checkpoint.nnqc' is corrupt" p.nnq --resume "$tmp/flip"
expect_error missing "cannot open checkpoint '$tmp/nothing/checkpoint.nnqc'" p.nnq --resume "$tmp/nothing"
program nodir.nnq 64 2 /dev/null/ck
expect_error unwritable-dir "cannot create checkpoint directory '/dev/null/ck'" nodir.nnq
grep -q '^epoch ' err_unwritable-dir/out.txt && bad "training started before the directory was checked"
if [ "$(id -u)" != 0 ]; then
    mkdir -p ro && chmod 0500 ro
    program ro.nnq 64 2 "$tmp/ro/ck"
    expect_error read-only-dir "$tmp/ro/ck" ro.nnq
    chmod 0700 ro
fi

echo "$pass passed, $fails failed"
[ $fails -eq 0 ]
