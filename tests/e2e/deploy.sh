#!/usr/bin/env bash
# nnqc's commands on a trained model (compiler/deploy.c, runtime/infer.c): inspect shows
# the architecture; predict's classes give eval's accuracy, at batch 1 (dense layers from
# the packed bits) as at 100, and its .npy outputs have the documented headers; export
# --format npy writes every tensor; the engine from C (examples/c/engine_predict.c, shown
# in docs/deploy.md) predicts the same classes; a model declared on [H, W] samples evaluates
# as trained; bad input is refused with a message, exit 1 and no output
# file. (That eval reproduces each example's test accuracy: e2e_examples.)
set -u
NNQC="$1"; SRC="$2"; ENGINE_PREDICT="$3"
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make_subset "$tmp" 2000 300
sed -e 's/epochs     = 8/epochs = 2/' "$SRC/tests/e2e/mlp_subset.nnq" > "$tmp/mlp.nnq"
(cd "$tmp" && "$NNQC" run mlp.nnq --data-dir "$tmp" --progress=lines > train.out 2>&1) || { cat "$tmp/train.out"; fail "training"; }
M="$tmp/mlp_subset.nnqm"; IMG="$tmp/fashion-mnist/t10k-images-idx3-ubyte.gz"
LAB="$tmp/fashion-mnist/t10k-labels-idx1-ubyte.gz"

# inspect: the record, op by op, and the normalization
"$NNQC" inspect "$M" > "$tmp/inspect.txt" 2>&1
if grep -q '^architecture: input \[1, 28, 28\], 10 classes, normalized per channel: (x - 0.28' "$tmp/inspect.txt" &&
   grep -q '%2 = dense %1, @dense1.w$' "$tmp/inspect.txt" && grep -q 'batchnorm %3, @bn1.running_mean, @bn1.running_var' "$tmp/inspect.txt"
then ok "inspect prints the architecture"; else bad "inspect:"; cat "$tmp/inspect.txt"; fi

# eval on the files; at batch 1 and 3 too
acc=$("$NNQC" eval "$M" --images "$IMG" --labels "$LAB" | sed -n 's/^accuracy \([0-9.]*\)  (\([0-9]*\) of 300)$/\2/p')
want=$(sed -n 's/^test accuracy: hard \([0-9.]*\).*/\1/p' "$tmp/train.out")
[ -n "$acc" ] && [ "$(awk -v c="$acc" 'BEGIN { printf "%.4f", c / 300 }')" = "$want" ] &&
    ok "eval --images/--labels: $acc of 300 ($want, as trained)" || bad "eval: '$acc' correct, training printed $want"
for b in 1 3; do
    a=$("$NNQC" eval "$M" --images "$IMG" --labels "$LAB" --batch $b | sed -n 's/^accuracy .*(\([0-9]*\) of 300)$/\1/p')
    [ "$a" = "$acc" ] && ok "eval --batch $b: $a" || bad "eval --batch $b: $a correct, $acc at batch 100"
done
"$NNQC" eval "$M" --images "$IMG" --labels "$LAB" > "$tmp/eval.txt"
rows=$(awk '/^confusion/ { on = 1; next } on && NF == 11 { s = 0; for (i = 2; i <= 11; i++) s += $i; t += s; d += $($1 + 2) } END { print t, d }' "$tmp/eval.txt")
[ "$rows" = "300 $acc" ] && ok "confusion matrix: 300 samples, $acc on the diagonal" || bad "confusion matrix sums: $rows"

# predict: one class per line, as many as images, agreeing with the labels as eval does
"$NNQC" predict "$M" "$IMG" > "$tmp/pred.txt" 2> "$tmp/pred.err"
{ gzip -dc "$LAB" 2>/dev/null || cat "$LAB"; } | tail -c +9 | od -An -tu1 -v | tr -s ' ' '\n' | sed '/^$/d' > "$tmp/labels.txt"
right=$(paste -d' ' "$tmp/pred.txt" "$tmp/labels.txt" | awk '$1 == $2 { n++ } END { print n + 0 }')
[ "$(wc -l < "$tmp/pred.txt")" = 300 ] && [ "$right" = "$acc" ] && ok "predict: 300 classes, $right right" ||
    bad "predict: $(wc -l < "$tmp/pred.txt") lines, $right right (eval: $acc)"; cat "$tmp/pred.err"
"$NNQC" predict "$M" "$IMG" --batch 1 | cmp -s - "$tmp/pred.txt" && ok "predict --batch 1: the same classes" || bad "predict --batch 1 differs"

# the engine from C (examples/c/engine_predict.c), and docs/deploy.md's copy of it
{ gzip -dc "$IMG" 2>/dev/null || cat "$IMG"; } | tail -c +17 > "$tmp/pixels.raw"
"$ENGINE_PREDICT" "$M" "$tmp/pixels.raw" | cmp -s - "$tmp/pred.txt" && ok "examples/c/engine_predict.c predicts as nnqc predict" ||
    bad "engine_predict differs from nnqc predict"
awk '/^<!-- examples\/c\/engine_predict.c -->/ { want = 1; next } want && /^```c/ { on = 1; next } on && /^```/ { exit } on' \
    "$SRC/docs/deploy.md" | cmp -s - "$SRC/examples/c/engine_predict.c" && ok "docs/deploy.md shows engine_predict.c as it is" ||
    bad "docs/deploy.md's copy of examples/c/engine_predict.c differs from the file"

# predict -o: .npy headers and sizes (format 1.0, 64-byte aligned header)
"$NNQC" predict "$M" "$IMG" -o "$tmp/logits.npy" && "$NNQC" predict "$M" "$IMG" --top 3 -o "$tmp/top.npy" || bad "predict -o"
h1=$(head -c 128 "$tmp/logits.npy" | tail -c +11 | tr -d '\n'); h2=$(head -c 128 "$tmp/top.npy" | tail -c +11 | tr -d '\n')
[ "$(head -c 6 "$tmp/logits.npy" | tail -c 5)" = NUMPY ] && [[ "$h1" == "{'descr': '<f4', 'fortran_order': False, 'shape': (300, 10), }"* ]] &&
    [ "$(stat -c %s "$tmp/logits.npy")" = $((128 + 300 * 10 * 4)) ] && ok "predict -o: <f4 (300, 10)" || bad "logits.npy header: $h1"
[[ "$h2" == "{'descr': '<i4', 'fortran_order': False, 'shape': (300, 3), }"* ]] && [ "$(stat -c %s "$tmp/top.npy")" = $((128 + 300 * 3 * 4)) ] &&
    ok "predict --top 3 -o: <i4 (300, 3)" || bad "top.npy header: $h2"
first=$(tail -c +129 "$tmp/top.npy" | od -An -td4 -v -w12 | awk '{ print $1 }')
[ "$first" = "$(cat "$tmp/pred.txt")" ] && ok "--top 3: the first column is predict's class" || bad "--top 3 first column differs"

# predict -o naming its own model or images: refused before any work (the model file was
# replaced by the predictions)
cp "$M" "$tmp/own.nnqm"; cp "$IMG" "$tmp/own.images"
for o in own.nnqm own.images; do
    "$NNQC" predict "$tmp/own.nnqm" "$tmp/own.images" -o "$tmp/$o" > "$tmp/own.out" 2>&1; rc=$?
    [ $rc -eq 1 ] && grep -q "error: -o '$tmp/$o' is the input file" "$tmp/own.out" && cmp -s "$M" "$tmp/own.nnqm" && cmp -s "$IMG" "$tmp/own.images" &&
        ok "predict -o its own input ($o): refused, both intact" || { bad "predict -o $o: exit $rc"; cat "$tmp/own.out"; }
done

# A full disk (a .tmp linked to /dev/full): predict -o and export report it and leave no
# file; an export is one set, so a failure late in it leaves none of the files before
# it either (the C header was left beside no source, the first .npy files beside none).
if [ -w /dev/full ]; then
    ln -s /dev/full "$tmp/full.npy.tmp"
    "$NNQC" predict "$M" "$IMG" -o "$tmp/full.npy" > "$tmp/full.out" 2>&1
    rc=$?
    [ $rc -eq 1 ] && grep -q "error: cannot write '$tmp/full.npy': write of '$tmp/full.npy.tmp' failed: No space left on device" "$tmp/full.out" &&
        [ ! -e "$tmp/full.npy" ] && [ ! -e "$tmp/full.npy.tmp" ] && ok "predict -o on a full disk: refused, no file" ||
        { bad "predict -o on a full disk: exit $rc"; cat "$tmp/full.out"; }
    last=$("$NNQC" inspect "$M" | awk 'NR > 1 && NF && $1 !~ /:$/ { n = $1 } /^architecture/ { exit } END { print n }')
    mkdir -p "$tmp/npyfull"; ln -s /dev/full "$tmp/npyfull/$last.npy.tmp"
    "$NNQC" export "$M" --format npy -o "$tmp/npyfull" > "$tmp/full.out" 2>&1
    rc=$?
    [ $rc -eq 1 ] && [ -n "$last" ] && grep -q "No space left on device" "$tmp/full.out" && [ -z "$(ls -A "$tmp/npyfull")" ] &&
        ok "export --format npy on a full disk at its last tensor ($last): refused, no file written" ||
        { bad "export npy on a full disk at '$last': exit $rc, left: $(ls -A "$tmp/npyfull" | head -3 | tr '\n' ' ')"; cat "$tmp/full.out"; }
    mkdir -p "$tmp/cfull"; ln -s /dev/full "$tmp/cfull/model.c.tmp"
    "$NNQC" export "$M" --format c -o "$tmp/cfull" > "$tmp/full.out" 2>&1
    rc=$?
    [ $rc -eq 1 ] && grep -q "error: C source '$tmp/cfull/model.c': write of '$tmp/cfull/model.c.tmp' failed: No space left on device" "$tmp/full.out" && [ -z "$(ls -A "$tmp/cfull")" ] &&
        ok "export --format c on a full disk at the source: refused, no header either" ||
        { bad "export c on a full disk: exit $rc, left: $(ls -A "$tmp/cfull" | tr '\n' ' ')"; cat "$tmp/full.out"; }
fi

# export --format npy
"$NNQC" export "$M" --format npy -o "$tmp/npy/sub" > "$tmp/exp.out" 2>&1 || { bad "export npy"; cat "$tmp/exp.out"; }
sz=$(stat -c %s "$tmp/npy/sub/dense1.w.npy" 2>/dev/null)
h=$(head -c 128 "$tmp/npy/sub/dense1.w.npy" | tail -c +11 | tr -d '\n')
[ "$sz" = $((128 + 784 * 300 * 4)) ] && [[ "$h" == "{'descr': '<f4', 'fortran_order': False, 'shape': (784, 300), }"* ]] &&
    [ -f "$tmp/npy/sub/bn2.running_var.npy" ] && [ "$(stat -c %s "$tmp/npy/sub/dense1.w.bits.npy")" = $((128 + 784 * 300 / 8)) ] &&
    [ "$(stat -c %s "$tmp/npy/sub/dense1.w.labels.npy")" = $((128 + 8)) ] &&
    ok "export --format npy: $(ls "$tmp/npy/sub" | wc -l) files" || bad "export npy: dense1.w.npy $sz bytes, header $h"
# what they hold agrees: the first 64 weights of dense1.w, each the label its packed index
# (1 bit, least significant first) names in dense1.w.labels.npy
labels=$(tail -c +129 "$tmp/npy/sub/dense1.w.labels.npy" | od -An -tf4 -v | tr -s ' ' '\n' | sed '/^$/d' | tr '\n' ' ')
want=$(tail -c +129 "$tmp/npy/sub/dense1.w.bits.npy" | head -c 8 | od -An -tu1 -v |
       awk -v l="$labels" '{ split(l, lab, " "); for (i = 1; i <= NF; i++) for (b = 0; b < 8; b++) print lab[int($i / 2 ^ b) % 2 + 1] }')
got=$(tail -c +129 "$tmp/npy/sub/dense1.w.npy" | head -c 256 | od -An -tf4 -v | tr -s ' ' '\n' | sed '/^$/d')
[ "$(echo "$labels" | wc -w)" = 2 ] && [ -n "$got" ] && [ "$got" = "$want" ] &&
    ok "export --format npy: the float values are the labels the packed bits name" ||
    bad "export npy: dense1.w's first 64 values do not match its bits and labels ($labels)"

# Two exports into one directory take turns whole: while another process holds the
# directory (flock, as a running export does from its first .tmp to its last rename), an
# export waits, saying so, and writes nothing; it finishes once the lock is released.
# (Before, the .tmp files were unlocked once written and two sets' renames could
# interleave.)
mkdir -p "$tmp/turns"; mkfifo "$tmp/turns.hold"
flock "$tmp/turns" sh -c "read x < '$tmp/turns.hold'" &
holder=$!
for i in $(seq 100); do flock -n "$tmp/turns" true || break; sleep 0.1; done
"$NNQC" export "$M" --format c -o "$tmp/turns" > "$tmp/turns.out" 2> "$tmp/turns.err" &
exporter=$!
for i in $(seq 200); do grep -q "waiting for another process writing into '$tmp/turns'" "$tmp/turns.err" && break; sleep 0.1; done
grep -q "note: waiting for another process writing into '$tmp/turns'" "$tmp/turns.err" && [ -z "$(ls -A "$tmp/turns")" ] &&
    ok "export into a directory another process is writing: waits, nothing written" ||
    { bad "export beside a locked directory: did not wait ($(ls -A "$tmp/turns" | tr '\n' ' '))"; cat "$tmp/turns.err"; }
echo go > "$tmp/turns.hold"; wait $holder
wait $exporter; rc=$?
"$NNQC" export "$M" --format c -o "$tmp/alone" > /dev/null 2>&1 # the same export, nobody waiting
[ $rc -eq 0 ] && [ -s "$tmp/turns/model.c" ] && cmp -s "$tmp/turns/model.c" "$tmp/alone/model.c" &&
    cmp -s "$tmp/turns/model.h" "$tmp/alone/model.h" &&
    ok "export after the lock is released: both files, as an export alone writes them" ||
    { bad "export after the lock: exit $rc, or files other than an export alone's"; cat "$tmp/turns.err"; }

# refused, with a message, exit 1, no output
refused() { # WANT CMD...: exit 1, WANT in stderr
    local want="$1"; shift
    "$@" > "$tmp/r.out" 2> "$tmp/r.err"; local rc=$?
    if [ $rc -eq 1 ] && grep -q "$want" "$tmp/r.err"; then ok "refused: $want"
    else bad "expected exit 1 and '$want', got $rc:"; cat "$tmp/r.err"; fi
}
cp "$M" "$tmp/bad.nnqm"; printf '\x55' | dd of="$tmp/bad.nnqm" bs=1 seek=200 conv=notrunc status=none
refused "CRC-32 mismatch" "$NNQC" eval "$tmp/bad.nnqm" --images "$IMG" --labels "$LAB"
refused "cannot open model file" "$NNQC" predict "$tmp/none.nnqm" "$IMG"
refused "top 11: the model has 10 classes" "$NNQC" predict "$M" "$IMG" --top 11
mkdir -p "$tmp/c/cifar-10-batches-bin"
head -c $((3073 * 4)) /dev/zero > "$tmp/c/cifar-10-batches-bin/test_batch.bin"
refused "error: model 'mlp' expects inputs of shape \[1, 28, 28\] but" "$NNQC" eval "$M" --cifar "$tmp/c/cifar-10-batches-bin"
refused "declares no data set 'valid'" "$NNQC" eval "$M" --data valid "$tmp/mlp.nnq"
refused "cannot write '$tmp/nodir/o.npy': No such file or directory" "$NNQC" predict "$M" "$IMG" -o "$tmp/nodir/o.npy"
mkdir -p "$tmp/odir"
refused "cannot write '$tmp/odir': it is a directory" "$NNQC" predict "$M" "$IMG" -o "$tmp/odir"
[ ! -e "$tmp/nodir/o.npy.tmp" ] && ok "no partial output" || bad "a partial file was left"
"$NNQC" eval "$M" > /dev/null 2>&1; [ $? -eq 2 ] && ok "eval without data: usage (exit 2)" || bad "eval without data"
# a model declared on [28, 28] samples (one channel's images, only flatten and elementwise
# ops reading them): eval, packed and float, gives the training's test accuracy (the
# engine refused it: "1 normalization channels for an input of 28"; its C export:
# e2e_export_c)
cp "$SRC/tests/e2e/hw_samples.nnq" "$tmp/hw.nnq"
if (cd "$tmp" && "$NNQC" run hw.nnq --data-dir "$tmp" --progress=lines > hw.out 2>&1); then
    if msg=$(eval_agrees "$NNQC" "$tmp" "$tmp/hw.nnq" "$tmp/hw.out"); then ok "[28, 28] samples: $msg"; else bad "[28, 28] samples: $msg"; fi
else
    bad "[28, 28] samples: training failed"; cat "$tmp/hw.out"
fi
# a bad option value: exit 2 and what the option takes
usage_error() { # WANT CMD...: exit 2, WANT in stderr
    local want="$1"; shift
    "$@" > "$tmp/r.out" 2> "$tmp/r.err"; local rc=$?
    if [ $rc -eq 2 ] && grep -qF -- "$want" "$tmp/r.err"; then ok "usage error: $want"
    else bad "expected exit 2 and '$want', got $rc:"; cat "$tmp/r.err"; fi
}
usage_error "--top takes a whole number from 1 to 100000, not '0'" "$NNQC" predict "$M" "$IMG" --top 0
usage_error "predict takes an image file or --cifar DIR" "$NNQC" predict "$M" "$IMG" --cifar "$tmp/c/cifar-10-batches-bin"
usage_error "predict reads images only" "$NNQC" predict "$M" "$IMG" --labels "$LAB"
usage_error "--classes takes 10 or 100, not '7'" "$NNQC" eval "$M" --cifar "$tmp/c/cifar-10-batches-bin" --classes 7
usage_error "--threads takes a whole number from 1 to 1024, not 'two'" "$NNQC" eval "$M" --images "$IMG" --labels "$LAB" --threads two

echo "$pass passed, $fails failed"
[ $fails -eq 0 ]
