#!/usr/bin/env bash
# Checkpoints and --resume, end to end, with every kind of state a run carries (Adam
# moments, batch norm, dropout, augmentation, an lr schedule in epochs, annealed beta,
# keep = best, per-epoch test evaluation):
#  - k epochs, then --resume to N, gives bit for bit the uninterrupted N-epoch run: the
#    same saved model and the same epoch lines for epochs k+1..N, and a metrics file
#    that continues the first run's (epochs 1..N, each once);
#  - a run killed (SIGKILL) after its first checkpoint resumes to the same model;
#  - resuming a finished run trains nothing and saves the same model;
#  - a checkpoint of another program (named by its description: the parameter whose
#    shape differs), a truncated or corrupt one, one from beyond
#    --epochs and a missing one are refused naming the file; an unusable checkpoint
#    directory fails at once, naming it; all with exit status 1;
#  - SIGINT ends the run after the current epoch with its checkpoint and metrics (exit 1,
#    how to resume), and resuming gives the same model and the whole metrics record;
#  - an adamw checkpoint is refused by the same program under adam;
#  - a diverging run names the iteration and the first non-finite tensor and leaves the
#    last checkpoint and an existing model file as they were.
set -u
NNQC="$1"; SRC="$2"
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make_subset "$tmp" 3000 500
cd "$tmp"

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
# the resumed run's metrics file continues the 2-epoch run's: epochs 1-5, none twice
if [ "$(metrics_from part 1)" = "$(metrics_from full 1)" ] \
    && [ "$(json_field part/m.jsonl test_acc_hard)" = "$(json_field full/m.jsonl test_acc_hard)" ]; then
    ok "metrics: epochs 1-2 kept, 3-5 appended, identical to the uninterrupted run's"
else bad "metrics differ"; metrics_from full 1; echo "--- resumed:"; metrics_from part 1; fi

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
expect_error other-program "checkpoint '$tmp/full/ck/checkpoint.nnqc' was written by a different program: it has 'parameter dense1.w f32\[784, 64\]" \
    other.nnq --resume "$tmp/full/ck"
expect_error fewer-epochs "written after epoch 5, but this run has 3 epochs" p.nnq --resume "$tmp/full/ck" --epochs 3
expect_error one-epoch "written after epoch 5, but this run has 1 epoch (--epochs" p.nnq --resume "$tmp/full/ck" --epochs 1
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

# Ctrl-C: SIGINT during training finishes the epoch, saves its checkpoint and the metrics
# of the finished epochs, exits 1 saying how to resume; resuming gives the same model and
# the whole metrics record. (set -m: a background job of a script otherwise ignores SIGINT.)
mkdir -p int
set -m
(cd int && exec "$NNQC" run ../long.nnq --data-dir "$tmp" --threads 2 --progress=lines \
    --metrics m.jsonl > out.txt 2>&1) &
pid=$!
set +m
for _ in $(seq 1 3000); do
    grep -q '^epoch ' int/out.txt 2>/dev/null && break
    sleep 0.01
done
kill -INT $pid 2>/dev/null; wait $pid; rc=$?
at=$(sed -n "s/.*interrupted by SIGINT after epoch \([0-9]*\) of 12: checkpoint saved in 'ck'; continue with the same command and --resume ck/\1/p" int/out.txt)
if [ $rc -eq 1 ] && [ -n "$at" ] && [ -f int/ck/checkpoint.nnqc ] && [ "$(metrics_from int 1 | wc -l)" -eq "$at" ] \
    && [ "$(metrics_from int 1)" = "$(metrics_from longfull 1 | head -n "$at")" ]; then
    ok "SIGINT: exit 1 after epoch $at with its checkpoint and the metrics of epochs 1-$at"
else bad "SIGINT: exit $rc, expected 1 with a checkpoint and metrics:"; cat int/out.txt; fi
# SIGHUP (the terminal closed, an ssh session dropped) does the same; it killed the run
mkdir -p hup
(cd hup && exec "$NNQC" run ../long.nnq --data-dir "$tmp" --threads 2 --progress=lines > out.txt 2>&1) &
pid=$!
for _ in $(seq 1 3000); do
    grep -q '^epoch ' hup/out.txt 2>/dev/null && break
    sleep 0.01
done
kill -HUP $pid 2>/dev/null; wait $pid; rc=$?
if [ $rc -eq 1 ] && grep -q "interrupted by SIGHUP after epoch [0-9]* of 12: checkpoint saved in 'ck'" hup/out.txt &&
    [ -f hup/ck/checkpoint.nnqc ]; then ok "SIGHUP: exit 1 with its checkpoint"
else bad "SIGHUP: exit $rc, expected 1 with a checkpoint:"; cat hup/out.txt; fi
train int long.nnq --resume ck || { cat int/out.txt; fail "resuming the interrupted run failed"; }
if cmp -s longfull/model.nnqm int/model.nnqm && [ "$(metrics_from int 1)" = "$(metrics_from longfull 1)" ]; then
    ok "interrupted after epoch $at and resumed: the same model, the whole metrics record"
else bad "interrupted and resumed: the model or the metrics differ"; fi

# adam and adamw keep the same state; the checkpoint names the optimizer exactly
sed 's/adam(lr = 2e-3,/adamw(lr = 2e-3, weight_decay = 0.01,/' p.nnq > w.nnq
grep -q 'adamw(' w.nnq || fail "could not make the adamw program"
train wrun w.nnq --epochs 1 || { cat wrun/out.txt; fail "the adamw run failed"; }
expect_error adamw-as-adam "was written by a different program: .*optimizer adamw" p.nnq --resume "$tmp/wrun/ck"

# divergence: beta jumps to 1e4 at iteration 45 (epoch 2 of 30 iterations), where this weight overflows;
# the error names the iteration and the tensor; the epoch-1 checkpoint and an older
# model file are left as they were
cat > div.nnq <<EOF
projection blowup() {
    aux    a
    init   a = w0
    weight w = a * exp(beta - 100)
    update a using grad(w)
    hard   w = a
}
model mlp(x: f32[1, 28, 28]) -> f32[10] {
    return dense(flatten(x), 10, quant = blowup())
}
data train = idx("fashion-mnist/train-images-idx3-ubyte.gz",
                 "fashion-mnist/train-labels-idx1-ubyte.gz", normalize = standard)
train mlp on train {
    optimizer  = adam(lr = 1e-3)
    beta       = anneal(start = 100, times = 100, every = 45 iterations, max = 1e6)
    epochs     = 3
    batch      = 50
    checkpoint "ck"
    save "model.nnqm"
}
EOF
mkdir -p err_diverge && echo "an older model" > err_diverge/model.nnqm
expect_error diverge "training diverged at iteration 4[56]: the loss is .*; the first non-finite tensor is 'dense1.w.weight'" div.nnq
if [ "$(cat err_diverge/model.nnqm)" = "an older model" ] && [ -f err_diverge/ck/checkpoint.nnqc ]; then
    ok "diverged: the epoch-1 checkpoint and the older model file are intact"
else bad "diverged: the checkpoint or the model file was touched"; fi

echo "$pass passed, $fails failed"
[ $fails -eq 0 ]
