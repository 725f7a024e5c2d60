#!/usr/bin/env bash
# Bad input at run time gets a clear message, a non-zero exit (1, not a crash) and
# leaves no half-written output: missing and corrupt data files, shape and label
# mismatches, a diverging run, an unwritable model path, a batch too large for the
# machine's memory, a full disk under --emit -o and under standard output, a source file
# that never ends, expressions nested too deeply, a batch larger than the training set,
# two runs given one metrics path;
# and usage errors on the command line (exit 2).
set -u
NNQC="$1"; SRC="$2"
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make_subset "$tmp" 1000 200
cd "$tmp"
pass=0; fails=0

# expect_error NAME PATTERN FILE [nnqc args]: nnqc must exit 1 and print PATTERN.
expect_error() {
    local name="$1" pattern="$2" file="$3"; shift 3
    "$NNQC" run "$file" --data-dir "$tmp" --progress=lines "$@" > out.txt 2>&1
    local rc=$?
    if [ $rc -eq 1 ] && grep -q -- "$pattern" out.txt; then
        pass=$((pass + 1))
    else
        fails=$((fails + 1)); echo "FAIL $name: exit $rc, expected 1 and '$pattern' in:"; cat out.txt
    fi
}

program() { # NAME IMAGES LABELS INPUT_SHAPE [SETTINGS...]
    local name="$1" img="$2" lbl="$3" shape="$4"; shift 4
    {
        echo "labels binary = {-1, +1}"
        echo "model m(x: f32[$shape]) -> f32[10] {"
        echo "    return dense(relu(dense(flatten(x), 32, quant = ${QUANT:-pmf(binary)})), 10)"
        echo "}"
        echo "data d = idx(\"$img\", \"$lbl\", normalize = standard)"
        echo "train m on d {"
        echo "    epochs = 1"
        echo "    validation = 100"
        for s in "$@"; do echo "    $s"; done
        echo "}"
    } > "$name.nnq"
}
F=fashion-mnist
program missing "$F/nope-images.gz" "$F/train-labels-idx1-ubyte.gz" "1, 28, 28"
expect_error missing-file "cannot find data file 'fashion-mnist/nope-images.gz'" missing.nnq
# a name that starts with ./ is listed as written under the current directory, not as ././
program missing_dot "./nope-images.gz" "$F/train-labels-idx1-ubyte.gz" "1, 28, 28"
expect_error missing-dot-file "tried: .*, \./nope-images.gz (the current directory)" missing_dot.nnq

# a data file's path that names a directory: said, where it read as a missing file
mkdir -p imgdir
program dirdata imgdir "$F/train-labels-idx1-ubyte.gz" "1, 28, 28"
expect_error data-is-directory "cannot find data file 'imgdir'; tried: $tmp/imgdir (--data-dir: a directory)" dirdata.nnq

printf 'this is not an idx file at all' > garbage.gz
program garbage garbage.gz "$F/train-labels-idx1-ubyte.gz" "1, 28, 28"
expect_error bad-magic "garbage.gz" garbage.nnq

head -c 50000 "$F/train-images-idx3-ubyte.gz" > short.gz
program short short.gz "$F/train-labels-idx1-ubyte.gz" "1, 28, 28"
expect_error truncated "truncated" short.nnq

program shape "$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz" "3, 32, 32"
expect_error shape-mismatch "error: model 'm' expects inputs of shape \[3, 32, 32\] but" shape.nnq

QUANT=float program diverge "$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz" "1, 28, 28" \
    "optimizer = sgd(lr = 1e30)"
expect_error divergence "diverged" diverge.nnq
# a projection whose weight is not finite from the start: said so before the first step,
# not as a divergence at the end of the epoch (relu turned the nans into 0s)
{
    echo "projection inf_weight() {"
    echo "    aux a"
    echo "    init a = w0"
    echo "    weight w = a / 0"
    echo "    update a using grad(w)"
    echo "    hard w = a"
    echo "}"
} > inf_proj.nnq
QUANT=inf_weight program inf_init "$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz" "1, 28, 28"
cat inf_proj.nnq >> inf_init.nnq
expect_error initial-state-nonfinite "training cannot start: the initial state is not finite: the first non-finite tensor is 'dense1.w.weight' (element 0 is inf" inf_init.nnq
# a divergence keeps the metrics of the epochs before it (they were deleted with the
# .tmp); one before any epoch leaves an earlier metrics file as it was
QUANT=float program diverge2 "$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz" "1, 28, 28" \
    "optimizer = sgd(lr = 0.01, schedule = step(every = 1 epochs, gamma = 1e30))" "epochs = 3"
expect_error divergence-epoch-2 "diverged" diverge2.nnq --metrics kept.jsonl
if [ "$(grep -c '"epoch":' kept.jsonl 2>/dev/null)" = 1 ] && grep -q '^{"epoch":1,"train_loss":[0-9]' kept.jsonl && [ ! -e kept.jsonl.tmp ]; then
    pass=$((pass + 1)); else fails=$((fails + 1)); echo "FAIL divergence-metrics: kept.jsonl holds:"; cat kept.jsonl; fi
echo '{"earlier":true}' > older.jsonl
expect_error divergence-first-step "diverged" diverge.nnq --metrics older.jsonl
if [ "$(cat older.jsonl)" = '{"earlier":true}' ] && [ ! -e older.jsonl.tmp ]; then pass=$((pass + 1)); else
    fails=$((fails + 1)); echo "FAIL divergence-no-epoch-metrics: older.jsonl holds:"; cat older.jsonl; fi

program nodir "$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz" "1, 28, 28" \
    'save "no/such/dir/m.nnqm"'
expect_error unwritable-model "error: cannot save model to 'no/such/dir/m.nnqm': cannot create 'no/such/dir/m.nnqm.tmp'" nodir.nnq
if ls no 2>/dev/null | grep -q .; then fails=$((fails + 1)); echo "FAIL: files left behind"; else pass=$((pass + 1)); fi
# ... and before training, not after it (a run of days would have lost its model)
if grep -q "^epoch 1/" out.txt; then fails=$((fails + 1)); echo "FAIL: unwritable model path found after training:"; cat out.txt
else pass=$((pass + 1)); fi
# a model path that is a directory: refused before training too (the rename at the end failed)
mkdir -p adir
program dirmodel "$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz" "1, 28, 28" 'save "adir"'
expect_error model-is-directory "error: cannot save model to 'adir': it is a directory" dirmodel.nnq
program dirmetrics "$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz" "1, 28, 28"
expect_error metrics-is-directory "error: cannot write metrics file 'adir': it is a directory" dirmetrics.nnq --metrics adir
# a .tmp left from before stays, and the model is still saved over it
program stale "$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz" "1, 28, 28" 'save "stale.nnqm"'
echo leftover > stale.nnqm.tmp
if "$NNQC" run stale.nnq --data-dir "$tmp" --progress=lines > out.txt 2>&1 && [ ! -e stale.nnqm.tmp ] &&
   "$NNQC" inspect stale.nnqm 2>&1 | grep -q "^architecture: input \[1, 28, 28\], 10 classes"; then
    pass=$((pass + 1)); else fails=$((fails + 1)); echo "FAIL: a stale .tmp stopped the save:"; cat out.txt; fi

program metrics "$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz" "1, 28, 28"
expect_error unwritable-metrics "no/such/dir/m.jsonl" metrics.nnq --metrics no/such/dir/m.jsonl
# the model file and the metrics file one file: refused before training (at the end the
# model was renamed over the metrics, exit 0)
program samefile "$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz" "1, 28, 28" 'save "same.out"'
expect_error model-is-metrics "error: cannot save model to 'same.out': it is also the metrics file (--metrics same.out)" samefile.nnq --metrics same.out
# a `save` path that is the program file: refused before training (it replaced the program)
program selfsave "$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz" "1, 28, 28" 'save "selfsave.nnq"'
cp selfsave.nnq selfsave.before
expect_error model-is-program "error: the model path 'selfsave.nnq' is the program file 'selfsave.nnq'" selfsave.nnq
cmp -s selfsave.nnq selfsave.before && pass=$((pass + 1)) || { fails=$((fails + 1)); echo "FAIL: the program file was overwritten by its model"; }

# A batch whose buffers no machine holds: 784 floats a sample at batch 10^9 are 784e9
# floats. The buffer's LLVM type must hold them all (LLVMArrayType counts in 32 bits:
# cut to 32 bits, batch.x was 2,315,952,128 floats, smaller than the code addressing it),
# and the run must stop before its first step with a message naming both sizes, not be
# killed by the kernel while its pages are filled.
program huge "$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz" "1, 28, 28" "batch = 1000000000"
"$NNQC" --emit=llvm huge.nnq > huge.ll 2> /dev/null
floats=$(sed -n 's/^@batch\.x = .*global \(.*\) zeroinitializer.*/\1/p' huge.ll |
         awk '{ n = 1; while (match($0, /[0-9]+ x/)) { n *= substr($0, RSTART, RLENGTH - 2); $0 = substr($0, RSTART + RLENGTH) } print n }')
if ge "${floats:-0}" 784000000000; then pass=$((pass + 1)); else
    fails=$((fails + 1)); echo "FAIL huge-batch-type: batch.x holds ${floats:-no} floats, not 784e9"; grep '^@batch\.x' huge.ll; fi
expect_error huge-batch "the program's buffers need .* MiB, and this machine has .* MiB available" huge.nnq

# Pooling over more than 2^31 planes (N C: 1024 channels of 2 x 2 at a batch of 2^22):
# the runtime takes their count in 64 bits, the product of the batch and the channels,
# where it was cut to 32 bits (2^32 planes to none at all).
cat > planes.nnq << 'EOF'
model m(x: f32[1024, 2, 2]) -> f32[10] {
    return dense(flatten(maxpool(x, 2)), 10)
}
data train = npy("x.npy", "y.npy")
train m on train {
    batch = 4194304
}
EOF
"$NNQC" --emit=llvm planes.nnq > planes.ll 2> /dev/null
# each maxpool call's second argument, defined earlier in its function
bad=$(awk '/^define / { delete def }
           $2 == "=" { def[$1] = $0 }
           /call void @nnq_rt_maxpool\(/ { split($0, a, ", "); arg = a[2]; n++
               if (arg !~ /^i64 %/) print "argument " arg
               else if (def[substr(arg, 5)] !~ /= mul i64 .*, 1024$/) print arg " is" def[substr(arg, 5)] }
           END { if (n < 1) print "no maxpool call" }' planes.ll)
if [ -z "$bad" ]; then pass=$((pass + 1)); else
    fails=$((fails + 1)); echo "FAIL pool-planes: $bad"; grep -n 'nnq_rt_maxpool(' planes.ll | head -3; fi

# More validation than half the set: the run holds out half and says so (it used to say
# nothing; the epoch line's counts were the only sign).
program halfval "$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz" "1, 28, 28"
sed -i 's/validation = 100/validation = 5000/' halfval.nnq
"$NNQC" run halfval.nnq --data-dir "$tmp" --progress=lines > out.txt 2>&1
rc=$?
if [ $rc -eq 0 ] && grep -q "note: validation = 5000 is more than half of data 'd': holding out its last 500 samples" out.txt &&
   grep -q "500 training, 500 validation" out.txt; then pass=$((pass + 1)); else
    fails=$((fails + 1)); echo "FAIL half-validation: exit $rc"; cat out.txt; fi

# A full disk (PATH.tmp, or standard output, a link to /dev/full): --emit -o reports it,
# exits 1 and leaves no file (LLVM's own file writing aborted with "IO failure on output
# stream", and left what it had written); output lost on standard output is an error
# too, for --emit, the model commands and a training run, whose model is still saved.
# (--emit -o used to be ignored by tokens, ast and ir, which wrote to standard output.)
if [ -w /dev/full ]; then
    program tofull "$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz" "1, 28, 28" 'save "full.nnqm"'
    for st in tokens ast ir llvm asm obj; do
        rm -f "emit.$st"; ln -s /dev/full "emit.$st.tmp"
        "$NNQC" --emit=$st tofull.nnq -o "emit.$st" > out.txt 2>&1
        rc=$?
        if [ $rc -eq 1 ] && grep -q "error: cannot write 'emit.$st': write of 'emit.$st.tmp' failed: No space left on device" out.txt &&
           [ ! -e "emit.$st" ] && [ ! -e "emit.$st.tmp" ]; then pass=$((pass + 1)); else
            fails=$((fails + 1)); echo "FAIL emit-$st-full: exit $rc, emit.$st $([ -e "emit.$st" ] && echo exists || echo absent)"; cat out.txt; fi
        "$NNQC" --emit=$st tofull.nnq -o "emit.$st" > out.txt 2>&1
        rc=$?
        "$NNQC" --emit=$st tofull.nnq > "stdout.$st" 2> /dev/null # -o holds what standard output gets
        if [ $rc -eq 0 ] && [ -s "emit.$st" ] && [ ! -s out.txt ] && cmp -s "emit.$st" "stdout.$st"; then pass=$((pass + 1)); else
            fails=$((fails + 1)); echo "FAIL emit-$st-o: exit $rc, $(wc -c < "emit.$st" 2>&1) bytes in the file, output:"; cat out.txt; fi
        "$NNQC" --emit=$st tofull.nnq > /dev/full 2> out.txt
        rc=$?
        if [ $rc -eq 1 ] && grep -q "error: cannot write standard output" out.txt; then pass=$((pass + 1)); else
            fails=$((fails + 1)); echo "FAIL emit-$st-stdout-full: exit $rc"; cat out.txt; fi
    done
    "$NNQC" run tofull.nnq --data-dir "$tmp" > /dev/full 2> out.txt
    rc=$?
    if [ $rc -eq 1 ] && grep -q "error: cannot write standard output" out.txt && "$NNQC" inspect full.nnqm > /dev/null; then
        pass=$((pass + 1)); else fails=$((fails + 1)); echo "FAIL run-stdout-full: exit $rc"; cat out.txt; fi
    # the same where the reader of its lines went away (`| head`): SIGPIPE killed the run
    # (status 141) before it saved anything
    rm -f full.nnqm
    "$NNQC" run tofull.nnq --data-dir "$tmp" --progress=lines 2> out.txt | :
    rc=${PIPESTATUS[0]}
    if [ $rc -eq 1 ] && grep -q "error: cannot write standard output" out.txt && "$NNQC" inspect full.nnqm > /dev/null; then
        pass=$((pass + 1)); else fails=$((fails + 1)); echo "FAIL run-stdout-closed-pipe: exit $rc"; cat out.txt; fi
    "$NNQC" inspect full.nnqm > /dev/full 2> out.txt
    rc=$?
    if [ $rc -eq 1 ] && grep -q "error: cannot write standard output: No space left on device" out.txt; then pass=$((pass + 1)); else
        fails=$((fails + 1)); echo "FAIL inspect-stdout-full: exit $rc"; cat out.txt; fi
fi

# A batch larger than the training samples: every epoch had no iteration, and the run
# went on and saved its initial model as if trained ("1 epoch of 0 iterations").
program bigbatch "$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz" "1, 28, 28" "batch = 1000"
expect_error batch-above-data "training m: its 900 training samples are fewer than one batch, so an epoch would train nothing" bigbatch.nnq

# Two runs given one --metrics path: the second stops at once, where it truncated the
# first one's .tmp and wrote its lines into it. The first holds the path while it waits
# for its data (a FIFO, opened for reading before any epoch), then fails on the empty file.
# So does a second run given its checkpoint directory (the two took turns saving whole
# checkpoints, and a resume took whichever was last, the other run's state).
mkfifo fifo-images.gz
program waiting fifo-images.gz "$F/train-labels-idx1-ubyte.gz" "1, 28, 28" 'checkpoint "ckshared"'
"$NNQC" run waiting.nnq --data-dir "$tmp" --progress=lines --metrics shared.jsonl > first.txt 2>&1 &
first=$!
for i in $(seq 100); do [ -e shared.jsonl.tmp ] && [ -d ckshared ] && break; sleep 0.1; done
sleep 0.5 # the directory is made, then locked
program second "$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz" "1, 28, 28"
expect_error metrics-in-use "cannot write metrics file 'shared.jsonl': another run is writing 'shared.jsonl.tmp'" second.nnq --metrics shared.jsonl
program secondck "$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz" "1, 28, 28" 'checkpoint "ckshared"'
expect_error checkpoint-in-use "checkpoint directory 'ckshared' is in use by another run" secondck.nnq
timeout 20 sh -c ": > fifo-images.gz"; wait $first

# A model name of 1024 characters, the most an identifier may have, trains, saves,
# checkpoints and resumes (one of 5000 stopped the run with "checkpoint: invalid
# description"; 1025 is refused by the lexer: golden case identifier_too_long).
long=$(printf 'm%.0s' $(seq 1024))
program longname "$F/train-images-idx3-ubyte.gz" "$F/train-labels-idx1-ubyte.gz" "1, 28, 28" \
    'checkpoint "cklong"' 'save "long.nnqm"'
sed -i "s/^model m(/model $long(/; s/^train m on/train $long on/" longname.nnq
rc=0
"$NNQC" run longname.nnq --data-dir "$tmp" --progress=lines > out.txt 2>&1 &&
    "$NNQC" run longname.nnq --data-dir "$tmp" --progress=lines --resume cklong --epochs 2 >> out.txt 2>&1 || rc=$?
if [ $rc -eq 0 ] && "$NNQC" inspect long.nnqm | grep -q "^model $long: " && grep -q "after epoch 1 of 2" out.txt; then
    pass=$((pass + 1)); else fails=$((fails + 1)); echo "FAIL long-model-name: exit $rc"; head -c 600 out.txt; fi

# A source that never ends: /dev/zero stops at its first NUL (it was read until memory ran
# out), an endless text at 256 MiB, each with a message and exit 1.
expect_check() { # NAME PATTERN FILE: nnqc check exits 1 within 60 s and prints PATTERN
    timeout 60 "$NNQC" check "$3" > out.txt 2>&1
    local rc=$?
    if [ $rc -eq 1 ] && grep -q -- "$2" out.txt; then pass=$((pass + 1)); else
        fails=$((fails + 1)); echo "FAIL $1: exit $rc, expected 1 and '$2' in:"; head -c 600 out.txt; fi
}
expect_check source-dev-zero "/dev/zero:1:1: error: file contains a NUL byte" /dev/zero < /dev/null
expect_check source-endless "cannot read '/dev/stdin': it is larger than 256 MiB" /dev/stdin < <(yes "# one more comment line")

# Expressions nested past 1,000 levels: every pass after the parser recurses once a
# level. A model's sum of 50,000 terms (a left-leaning tree, which the parser's stack does
# not bound) and a projection's chain of 50,000 soft values (each one operation on the
# one before) overflowed the stack. At 1,000 both compile, through every pass (-O0: the
# derivatives' code generated, not optimized).
deep_sum() { # TERMS: a model whose first statement adds TERMS copies of its input
    { echo "model m(x: f32[4]) -> f32[2] {"
      printf '    h = x'; for i in $(seq 2 "$1"); do printf ' + x'; done; echo
      echo "    return dense(h, 2)"
      echo "}"; } > "sum$1.nnq"
}
soft_chain() { # SOFTS: a projection whose weight is the last of SOFTS soft values s_k = s_(k-1) * 0.999
    { echo "labels b = {-1, +1}"
      echo "projection chain(Q: labels) {"
      echo "    aux    a"
      echo "    init   a = w0"
      echo "    soft   s1 = a"
      for i in $(seq 2 "$1"); do echo "    soft   s$i = s$((i - 1)) * 0.999"; done
      echo "    weight w = s$1"
      echo "    update a using grad(w)"
      echo "    hard   w = Q[a > 0]"
      echo "}"
      echo "model m(x: f32[4]) -> f32[2] {"
      echo "    return dense(x, 2, quant = chain(b))"
      echo "}"; } > "chain$1.nnq"
}
deep_sum 50000; soft_chain 50000; deep_sum 1000; soft_chain 1000
expect_check deep-sum "sum50000.nnq:2:9: error: this expression nests more than 1000 levels deep" sum50000.nnq
expect_check soft-chain "chain50000.nnq:1005:5: error: 's1001' is computed through more than 1000 operations in a row" chain50000.nnq
# One namespace of 50,000 names (a hash table; each definition was compared with every
# earlier one: 21 s to check this file): a label set, a data set and a block redefined at
# the end are each reported with the first definition, found across the table's growth.
{ for i in $(seq 1 50000); do echo "labels l$i = {-1, +1}"; done
  echo 'data l7 = npy("x.npy", "y.npy")'
  echo 'block l49999(x) {'; echo '    return x'; echo '}'
  echo 'model m(x: f32[4]) -> f32[2] {'; echo '    return dense(x, 2)'; echo '}'; } > names.nnq
timeout 60 "$NNQC" check names.nnq > out.txt 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q "names.nnq:50001:1: error: 'l7' is already defined" out.txt &&
   grep -q "names.nnq:7:1: note: first defined here" out.txt &&
   grep -q "names.nnq:50002:1: error: 'l49999' is already defined" out.txt &&
   grep -q "names.nnq:49999:1: note: first defined here" out.txt; then pass=$((pass + 1)); else
    fails=$((fails + 1)); echo "FAIL many-names: exit $rc"; head -c 600 out.txt; fi

# IR text (--from-ir): a kernel value at most 10,000 operations deep (a chain of 100,000
# overflowed the stack). The program's soft kernel is replaced by a chain of N products.
printf 'model m(x: f32[4]) -> f32[2] {\n    return dense(x, 2)\n}\n' > plain.nnq
"$NNQC" --emit=ir plain.nnq -o plain.ir
deep_ir() { # N: plain.ir, the weight through N - 1 products
    awk -v n="$1" '/^kernel @soft\.dense1\.w / { print; print "  %s0 = load aux0[i]"
                       for (k = 1; k < n; k++) printf "  %%s%d = mul %%s%d, 0.999\n", k, k - 1
                       printf "  store weight[i], %%s%d\n", n - 1; skip = 1; next }
                   skip && /^}/ { skip = 0 } !skip' plain.ir > "deep$1.ir"
}
deep_ir 100000; deep_ir 10001; deep_ir 10000
for n in 100000 10001; do
    "$NNQC" --from-ir deep$n.ir --emit=llvm -o deep.ll > out.txt 2>&1
    rc=$?
    if [ $rc -eq 1 ] && grep -q "deep$n.ir:[0-9]*:3: error: this value is computed through more than 10000 operations in a row" out.txt &&
       [ ! -e deep.ll ]; then pass=$((pass + 1)); else fails=$((fails + 1)); echo "FAIL ir-deep-$n: exit $rc"; head -c 600 out.txt; fi
done
# The deepest allowed of each: its code generated, and its chain whole in the IR (the
# model's 999 additions, the soft kernel's 999 and 9,999 products).
for f in "999 add sum1000.nnq" "999 mul chain1000.nnq" "9999 mul --from-ir deep10000.ir"; do
    set -- $f; min=$1 op=$2; shift 2
    n=$(timeout 300 "$NNQC" --emit=ir "$@" 2> out.txt | grep -c "= $op ")
    if timeout 300 "$NNQC" --emit=llvm -O0 "$@" -o deep.ll >> out.txt 2>&1 && grep -q "^define " deep.ll && [ "$n" -ge "$min" ]; then
        pass=$((pass + 1)); else fails=$((fails + 1)); echo "FAIL $*: the deepest allowed does not compile whole ($n $op, $min expected)"; head -c 600 out.txt; fi
    rm -f deep.ll
done

# The command line: a misspelt command names the nearest one; exit 2 for usage errors.
expect_usage() { # NAME PATTERN ARGS...: nnqc exits 2 and prints PATTERN
    local name="$1" pattern="$2"; shift 2
    "$NNQC" "$@" > out.txt 2>&1
    local rc=$?
    if [ $rc -eq 2 ] && grep -q -- "$pattern" out.txt; then pass=$((pass + 1)); else
        fails=$((fails + 1)); echo "FAIL $name: exit $rc, expected 2 and '$pattern' in:"; head -c 600 out.txt; fi
}
expect_usage cmd-check "error: unknown command 'chek'; did you mean 'check'? (see nnqc --help)" chek m.nnq
expect_usage cmd-eval "error: unknown command 'evl'; did you mean 'eval'?" evl m.nnqm
expect_usage cmd-far "error: unknown command 'frobnicate' (see nnqc --help)" frobnicate m.nnq
expect_usage option "error: unknown option '--epoch'; did you mean '--epochs'? (see nnqc --help)" run m.nnq --epoch 3
expect_usage option-compiler "error: unknown option '--no-cahce'; did you mean '--no-cache'?" run m.nnq --no-cahce
expect_usage data-dir-missing "error: --data-dir 'nowhere': No such file or directory" run m.nnq --data-dir nowhere
# an empty value names nothing: --metrics "" trained and wrote no metrics, without a word
expect_usage metrics-empty "error: --metrics needs a value, not an empty one" run m.nnq --metrics ""
expect_usage output-empty "error: -o needs a value, not an empty one" build m.nnq -o=
expect_usage data-dir-file "error: --data-dir 'shape.nnq': not a directory" run m.nnq --data-dir=shape.nnq
expect_usage option-far "error: unknown option '--frobnicate' (see nnqc --help)" check m.nnq --frobnicate
# an output that is the program file: refused before any work (`build p.nnq -o p.nnq`
# replaced the program with the trainer, `--emit=ir -o` with its IR, a `save` with a model)
expect_usage output-is-input "error: -o 'samefile.nnq' is the input file 'samefile.nnq'" build samefile.nnq -o samefile.nnq
expect_usage emit-output-is-input "error: -o './samefile.nnq' is the input file 'samefile.nnq'" --emit=ir samefile.nnq -o ./samefile.nnq
expect_usage metrics-is-input "error: --metrics 'samefile.nnq' is the input file 'samefile.nnq'" run samefile.nnq --metrics samefile.nnq
[ "$(head -c 6 samefile.nnq)" = labels ] && pass=$((pass + 1)) || { fails=$((fails + 1)); echo "FAIL: the program file was overwritten by an output"; }
expect_usage option-switch "error: --verify-each takes no value" check m.nnq --verify-each=1
expect_usage option-eval "error: unknown option '--imgaes' for eval; did you mean '--images'?" eval m.nnqm --imgaes a
expect_usage option-eval-run "error: unknown option '--thread' for eval; did you mean '--threads'?" eval m.nnqm --thread 2
expect_usage build-output "error: build needs -o TRAINER" build m.nnq
expect_usage opt-level "error: -O takes 0, 1, 2 or 3" check m.nnq -O4

echo "$pass passed, $fails failed"
[ $fails -eq 0 ]
