#!/usr/bin/env bash
# The pipeline's stages from the command line (compiler/pipeline.c lists the passes):
#  - --dump-after=PASS prints the IR after each IR pass, in order, and only that: after
#    lower the parameters carry no projection instance yet (no "aux N"), after
#    instantiate they do; the memory plan appears from memplan on; an unknown pass is
#    refused with the list;
#  - --verify-each accepts every example;
#  - docs/language.md's tables of train settings and layers hold every row of
#    compiler/train_settings.def and compiler/layers.def (nnqc --help-settings, --help-layers),
#    docs/projections.md's table of functions every row of compiler/proj_builtins.def;
#  - --emit=asm prints the host's assembly of the whole program (nnq_main and the
#    kernels), --emit=obj -o FILE writes a relocatable object that defines nnq_main;
#  - a training step of more than 256 instructions calls its parts, in order;
#  - nnq_main and calibrate are as long for 200 layers as for 20: what they do per
#    parameter or batch norm runs from tables (codegen.c's Rows), not as straight-line
#    code, which LLVM compiled in time superlinear in its length.
set -u
NNQC="$1"; SRC="$2"
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ex="$SRC/examples/fashion_lenet5_pmf.nnq"

passes=$("$NNQC" --help | sed -n 's/.*--dump-after PASS  print the IR after a pass: //p;/^ \{21\}[a-z_, ]*or [a-z_]*$/p' | tr -d ',' | sed 's/ or / /' | tr -s ' \n' ' ')
[ "$(echo $passes)" = "lower instantiate autodiff fuse_layers fuse memplan" ] && ok "the help lists the passes: $passes" || bad "the help lists '$passes'"
prev=""
for p in lower instantiate autodiff fuse_layers fuse memplan; do
    "$NNQC" check --dump-after=$p "$ex" > $tmp/$p.ir 2> $tmp/err || { cat $tmp/err; bad "--dump-after=$p failed"; continue; }
    [ "$(head -1 $tmp/$p.ir)" = "; IR after $p" ] && [ "$(grep -c '^; IR after' $tmp/$p.ir)" = 1 ] || bad "--dump-after=$p: not one dump headed '; IR after $p'"
    [ -n "$prev" ] && cmp -s $tmp/$prev.ir $tmp/$p.ir && bad "--dump-after=$p prints the same as $prev"
    prev=$p
done
grep -q '^param @conv1.w .* aux [0-9]' $tmp/lower.ir && bad "after lower, a parameter already has its projection instance"
grep -q '^param @conv1.w : f32\[20, 1, 5, 5\] quant pmf(binary) aux 1 init' $tmp/instantiate.ir && ok "instantiate gives each parameter its projection" || bad "after instantiate: $(grep -m1 '^param' $tmp/instantiate.ir)"
grep -q '^; memory at batch' $tmp/fuse.ir && bad "a memory plan before the memplan pass"
grep -q '^; memory at batch 100: ' $tmp/memplan.ir && ok "memplan plans the buffers" || bad "no memory plan after memplan"
grep -q 'param_grad' $tmp/instantiate.ir && bad "gradients before autodiff"
grep -q 'param_grad' $tmp/autodiff.ir && ok "autodiff appends the backward pass" || bad "no gradients after autodiff"
"$NNQC" check --dump-after=nonsense "$ex" > /dev/null 2> $tmp/err; rc=$?
[ $rc = 2 ] && grep -q "unknown pass 'nonsense' for --dump-after (lower, instantiate, autodiff, fuse_layers, fuse, memplan)" $tmp/err && ok "an unknown pass is refused with the list" || { cat $tmp/err; bad "unknown pass: exit $rc"; }

# --version: the build's version (CMakeLists.txt's), LLVM's, and what the runtime runs on
ver=$(sed -n 's/^project(nnq VERSION \([0-9.]*\) .*/\1/p' "$SRC/CMakeLists.txt")
NNQ_ISA=portable "$NNQC" --version > $tmp/version.txt 2>&1; rc=$?
[ $rc = 0 ] && [ -n "$ver" ] && [ "$(head -1 $tmp/version.txt)" = "nnqc $ver" ] && grep -q '^LLVM [0-9]' $tmp/version.txt &&
    grep -q '^vector instructions: portable' $tmp/version.txt && grep -q '^OpenBLAS [0-9]' $tmp/version.txt &&
    grep -q '^oneDNN [0-9]' $tmp/version.txt && ok "--version: nnqc $ver, LLVM, the instructions and the libraries" ||
    { cat $tmp/version.txt; bad "--version: exit $rc"; }

# the settings table (compiler/train_settings.def) is the one in the language reference
missing=$("$NNQC" --help-settings | tail -n +3 | while IFS= read -r row; do grep -qxF -- "$row" "$SRC/docs/language.md" || echo "$row" | cut -c1-60; done)
rows=$("$NNQC" --help-settings | tail -n +3 | wc -l)
[ -z "$missing" ] && [ "$rows" -ge 10 ] && ok "docs/language.md holds the $rows rows of the settings table" || bad "docs/language.md lacks settings rows: $missing"
# and the layers table (compiler/layers.def)
missing=$("$NNQC" --help-layers | tail -n +3 | while IFS= read -r row; do grep -qxF -- "$row" "$SRC/docs/language.md" || echo "$row" | cut -c1-60; done)
rows=$("$NNQC" --help-layers | tail -n +3 | wc -l)
[ -z "$missing" ] && [ "$rows" -ge 8 ] && ok "docs/language.md holds the $rows rows of the layers table" || bad "docs/language.md lacks layer rows: $missing"
# and the projections' functions (compiler/proj_builtins.def)
missing=$("$NNQC" --help-builtins | tail -n +3 | while IFS= read -r row; do grep -qxF -- "$row" "$SRC/docs/projections.md" || echo "$row" | cut -c1-60; done)
rows=$("$NNQC" --help-builtins | tail -n +3 | wc -l)
[ -z "$missing" ] && [ "$rows" -ge 20 ] && ok "docs/projections.md holds the $rows rows of the built-in functions table" || bad "docs/projections.md lacks function rows: $missing"

n=0
for f in "$SRC"/examples/*.nnq "$SRC"/stdlib/*.nnq; do
    "$NNQC" check --verify-each "$f" > /dev/null 2> $tmp/err && n=$((n + 1)) || { cat $tmp/err; bad "--verify-each $(basename $f)"; }
done
ok "--verify-each accepts $n examples and libraries"

"$NNQC" --emit=asm "$ex" > $tmp/l.s 2> $tmp/err || { cat $tmp/err; bad "--emit=asm failed"; }
grep -q '^nnq_main:' $tmp/l.s && grep -q 'call.*nnq_rt_conv2d' $tmp/l.s && ok "--emit=asm: $(wc -l < $tmp/l.s) lines, nnq_main and its runtime calls" || bad "--emit=asm lacks nnq_main or its calls"
"$NNQC" --emit=obj -o $tmp/l.o "$ex" 2> $tmp/err || { cat $tmp/err; bad "--emit=obj failed"; }
if [ "$(head -c 4 $tmp/l.o | od -An -c | tr -d ' ')" = '177ELF' ] && nm $tmp/l.o | grep -q ' T nnq_main$'; then
    ok "--emit=obj writes an ELF object defining nnq_main"
else
    bad "--emit=obj: not an object defining nnq_main"
fi
# a step in parts: MobileNetV2's train_step (over 500 instructions) calls functions of at
# most 256 instructions each, train_step.part0, part1, ... in order, and nothing else
"$NNQC" --emit=llvm -O0 "$SRC/examples/cifar10_mobilenetv2_md.nnq" > $tmp/m.ll 2> $tmp/err || { cat $tmp/err; bad "--emit=llvm failed"; }
calls=$(sed -n '/^define.* @train_step(/,/^}/p' $tmp/m.ll | grep -o '@train_step\.part[0-9]*' | tr '\n' ' ')
nparts=$(grep -c '^define.* @train_step\.part[0-9]*(' $tmp/m.ll)
want=$(seq 0 $((nparts - 1)) | sed 's/^/@train_step.part/' | tr '\n' ' ')
if [ "$nparts" -ge 2 ] && [ "$calls" = "$want" ]; then ok "train_step calls its $nparts parts in order"
else bad "train_step's parts: $nparts defined, calls: $calls"; fi
# nnq_main and calibrate, from --emit=llvm, for N dense layers with batch norms: lines
deep_lines() {
    local widths; widths=$(seq -s, 1 "$1" | sed 's/[0-9]\+/16/g')
    cat > $tmp/deep.nnq <<EOF
labels binary = {-1, +1}
model deep(x: f32[1, 28, 28]) -> f32[10] {
    h = flatten(x)
    for n in [$widths] {
        h = relu(batchnorm(dense(h, n, quant = pmf(binary))))
    }
    return dense(h, 10)
}
data train = idx("fashion-mnist/train-images-idx3-ubyte.gz", "fashion-mnist/train-labels-idx1-ubyte.gz")
train deep on train {
    optimizer = adam(lr = 1e-3)
    keep      = best
    init from "pretrained"
    checkpoint "ck"
    save      "deep.nnqm"
}
EOF
    "$NNQC" --emit=llvm -O0 $tmp/deep.nnq > $tmp/deep.ll 2> $tmp/err || { cat $tmp/err >&2; return; }
    for f in nnq_main calibrate; do
        echo "$f $(awk -v f="@$f(" 'index($0, "define") == 1 && index($0, f) { on = 1 } on { c++ } on && /^}/ { print c; exit }' $tmp/deep.ll)"
    done
}
a=$(deep_lines 20); b=$(deep_lines 200)
[ -n "$a" ] && [ "$a" = "$b" ] && ok "nnq_main and calibrate as long for 200 layers as for 20 ($(echo $a) lines)" ||
    bad "nnq_main and calibrate grow with the layers: 20 layers: $a; 200: $b"
echo "$pass passed, $fails failed"
[ $fails = 0 ]
