#!/usr/bin/env bash
# The IR text reads back (compiler/ir_parse.c, nnqc --from-ir):
#  - every example's whole module (--emit=ir) reads back and prints the same, with its
#    program and, where it uses only the standard library's projections, without (but
#    for the memory plan's header lines: without the program the batch is the default);
#  - every IR pass's output (--dump-after) of LeNet-5 and the flagship reads back and
#    prints the same, and carrying on from it ends in the same final module;
#  - training from the flagship's IR text saves the model file of training from its
#    program, byte for byte;
#  - IR text cut anywhere (64 places of a whole module) and with bytes changed is
#    refused with a located error or read, never a crash; a module that reads but does
#    not verify is the file's error at the instruction, not an internal one; a name
#    longer than 1,024 characters, a label set named like the program's model and a
#    function of more than 160,000 instructions are refused where they start.
set -u
NNQC="$1"; SRC="$2"
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

for ex in "$SRC"/examples/*.nnq; do
    b=$(basename "$ex" .nnq)
    "$NNQC" --emit=ir "$ex" > $b.ir 2> err || { cat err; bad "$b: --emit=ir"; continue; }
    "$NNQC" --from-ir $b.ir "$ex" --emit=ir > $b.back.ir 2> err && cmp -s $b.ir $b.back.ir && ok "$b: the module reads back ($(wc -l < $b.ir) lines)" ||
        { cat err; diff $b.ir $b.back.ir | head; bad "$b: the module does not read back"; }
    if ! grep -q '^projection' "$ex"; then   # only the standard library's projections: the text alone will do
        # (without the program, the train settings are the defaults: the memory plan's batch may differ)
        "$NNQC" --from-ir $b.ir --emit=ir 2> err | grep -v '^; \(memory\|work\|traffic\) at batch' > $b.alone.ir
        grep -v '^; \(memory\|work\|traffic\) at batch' $b.ir | cmp -s - $b.alone.ir || { cat err; bad "$b: the module alone does not read back"; }
    fi
done

for ex in fashion_lenet5_pmf fashion_mlp_pmf; do
    for p in lower instantiate autodiff fuse_layers fuse memplan; do
        "$NNQC" check --dump-after=$p "$SRC/examples/$ex.nnq" > $ex.$p.ir
        "$NNQC" check --from-ir $ex.$p.ir "$SRC/examples/$ex.nnq" --dump-after=$p > $ex.$p.back 2> err && cmp -s $ex.$p.ir $ex.$p.back ||
            { cat err; bad "$ex after $p does not read back"; continue; }
        "$NNQC" check --from-ir $ex.$p.ir "$SRC/examples/$ex.nnq" --dump-after=memplan > $ex.$p.final 2> err
    done
    same=0
    for p in lower instantiate autodiff fuse_layers fuse; do cmp -s $ex.memplan.ir $ex.$p.final && same=$((same + 1)); done
    [ $same = 5 ] && ok "$ex: every pass's output reads back, and carrying on from it gives the same final module" ||
        bad "$ex: only $same of 5 stages carry on to the same final module"
done

make_subset "$tmp" 3000 500
sed -e 's/validation = 10000/validation = 500/' "$SRC/examples/fashion_mlp_pmf.nnq" > mlp.nnq
"$NNQC" --emit=ir mlp.nnq > mlp.ir
"$NNQC" run mlp.nnq --data-dir . --epochs 1 --progress=lines > a.txt 2>&1 && mv mlp_binary.nnqm a.nnqm &&
"$NNQC" run --from-ir mlp.ir mlp.nnq --data-dir . --epochs 1 --progress=lines > b.txt 2>&1 && mv mlp_binary.nnqm b.nnqm &&
    cmp -s a.nnqm b.nnqm && ok "training from the IR text saves the program's model byte for byte" ||
    { cat a.txt b.txt; bad "training from IR text differs"; }

ir=fashion_lenet5_pmf.ir; size=$(wc -c < $ir); crashed=0; refused=0
for k in $(seq 1 64); do
    head -c $((size * k / 65)) $ir > cut.ir
    "$NNQC" --from-ir cut.ir --emit=ir > /dev/null 2> err; rc=$?
    [ $rc -ge 2 ] && { crashed=$((crashed + 1)); head -3 err; }
    [ $rc = 1 ] && grep -q '^cut.ir:[0-9]*:[0-9]*: error: ' err && refused=$((refused + 1))
    sed "$(( (k * 37) % $(wc -l < $ir) + 1 ))s/[0-9]/%/" $ir > mut.ir   # a digit made a '%'
    "$NNQC" --from-ir mut.ir --emit=ir > /dev/null 2> err; rc=$?
    [ $rc -ge 2 ] && { crashed=$((crashed + 1)); head -3 err; }
done
[ $crashed = 0 ] && ok "cut and changed IR: no crash ($refused of 64 cuts refused with a located error)" || bad "$crashed cut or changed IR files crashed nnqc"

# a module that reads but does not verify (a product's shape changed): that file's error
# at the instruction (its line, a caret), exit 1, not an internal error
sed 's/^\(  %4 = matmul %2, %3 : f32\[N, \)300\]/\1301]/' fashion_mlp_float.ir > shape.ir
"$NNQC" --from-ir shape.ir --emit=ir > /dev/null 2> err; rc=$?
! cmp -s fashion_mlp_float.ir shape.ir && [ $rc = 1 ] && grep -q '^shape.ir:20:3: error: @train %4: matmul shapes do not agree$' err &&
    grep -q '^ *\^$' err &&
    ! grep -q 'internal error' err && ok "IR that does not verify: the file's error at its instruction" ||
    { cat err; bad "IR that does not verify (exit $rc)"; }
# a name longer than identifiers may be (1024 bytes): refused where it starts; it reached
# the checkpoint's description and stopped the run with "checkpoint: invalid description"
long=$(printf 'q%.0s' $(seq 1025))
sed "s/^module @[A-Za-z0-9_]*/module @$long/" fashion_mlp_float.ir > long.ir
"$NNQC" --from-ir long.ir --emit=ir > /dev/null 2> err; rc=$?
[ $rc = 1 ] && grep -q '^long.ir:[0-9]*:9: error: name of 1025 characters; at most 1024 are allowed$' err &&
    ok "IR: a name of 1025 characters refused at its place" || { head -c 400 err; bad "IR long name (exit $rc)"; }
# a label set given a name the program gives its model (one namespace): refused at it
# (it was added beside the model's, which the hash table of names would have replaced)
sed 's/^labels @binary = /labels @mlp = /; s/pmf(binary)/pmf(mlp)/g' fashion_mlp_pmf.ir > clash.ir
"$NNQC" --from-ir clash.ir "$SRC/examples/fashion_mlp_pmf.nnq" --emit=ir > /dev/null 2> err; rc=$?
[ $rc = 1 ] && grep -q '^clash.ir:[0-9]*:[0-9]*: error: the program gives this name to something other than a label set$' err &&
    ok "IR: a label set named like the program's model refused" || { head -c 400 err; bad "IR label set named like the model (exit $rc)"; }
# a function of more than 160,000 instructions (what lowering's bound of 20,000
# operations a model gives a training step, with room): refused where it passes it, at
# once, not handed to passes that take hours there
{ sed -n '1,/^  %1 = labels/p' fashion_mlp_float.ir
  awk 'BEGIN { for (i = 2; i <= 160001; i++) printf "  %%%d = relu %%%d : f32[N, 1, 28, 28]\n", i, i == 2 ? 0 : i - 1; print "}" }'
} > big.ir
"$NNQC" --from-ir big.ir check > /dev/null 2> err; rc=$?
[ $rc = 1 ] && grep -q '^big.ir:[0-9]*:3: error: a function of more than 160000 instructions$' err &&
    ok "IR: a function of more than 160,000 instructions refused" || { head -c 400 err; bad "IR too large (exit $rc)"; }
rm -f big.ir
# unstored NAME BUFFER: NAME.ir (of NAME.nnq) with the soft kernel's store of BUFFER
# removed must be refused: the next update would load a value nothing wrote
unstored() {
    awk -v b="store $2" '/^kernel @soft.dense1.w /{soft=1} soft && index($0, b){soft=0; next} {print}' $1.ir > $1_bad.ir
    "$NNQC" --from-ir $1_bad.ir $1.nnq --emit=ir > /dev/null 2> err; local rc=$?
    ! cmp -s $1.ir $1_bad.ir && [ $rc = 1 ] &&
        grep -q "error: kernel update.dense1.w loads $2, which the update and soft kernels must both store" err &&
        ! grep -q 'internal error' err && ok "$1: the update loads $2, the soft kernel does not store it: refused" ||
        { cat err; bad "$1: $2 that the soft kernel does not store (exit $rc)"; }
}
# pmf written as the paper does, a score per label, carries its two-label softmax's exp
# and reciprocal in buffers of their own (pmf keeps such a pair as one value)
{ cat "$SRC/tests/compiler/pmf_pair.nnq"; sed 's/pmf(binary)/pmf_pair(binary)/g' mlp.nnq; } > pair.nnq
"$NNQC" --emit=ir pair.nnq > pair.ir 2> err || { cat err; bad "pmf_pair's IR"; }
unstored pair carry0
# pmf(binary) and gd_tanh(binary) load the weight for their Jacobian's tanh (fuse.c: the
# weight, carried)
unstored mlp weight
sed 's/pmf(binary)/gd_tanh(binary)/g' mlp.nnq > gdt.nnq
"$NNQC" --emit=ir gdt.nnq > gdt.ir 2> err || { cat err; bad "gd_tanh's IR"; }
grep -A3 '^kernel @update.dense1.w ' gdt.ir | grep -q 'load weight\[i\]' && ok "gd_tanh(binary): the update loads the weight" ||
    bad "gd_tanh(binary): the update does not load the weight"
unstored gdt weight
echo "$pass passed, $fails failed"
[ $fails = 0 ]
