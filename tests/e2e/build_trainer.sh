#!/usr/bin/env bash
# nnqc build writes a standalone trainer; run without the compiler it trains exactly as
# `nnqc run` does (bitwise-identical saved weights for the same seed, on any thread
# count: LeNet-5's trainer on 2 threads against nnqc run on 1, convolutions, pooling and
# fused batch norm included; the JIT keeps the program's buffers in a mapping of its
# own, the trainer in .bss), it
# resumes from its checkpoint (--resume) to the model `nnqc run` trains uninterrupted,
# and it rejects unknown options with status 2. A program whose buffers a trainer's
# .bss cannot hold is refused with a message.
set -eu
NNQC="$1"; SRC="$2"
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make_subset "$tmp" 3000 500
sed -e 's/validation = 1000/validation = 500/' -e 's/^    save /    checkpoint "ck"\n    save /' \
    "$SRC/tests/e2e/mlp_subset.nnq" > "$tmp/b.nnq"
cd "$tmp"
"$NNQC" build b.nnq -o trainer || fail "nnqc build failed"
[ -x trainer ] || fail "no executable written"
[ ! -e trainer.tmp ] && [ ! -e trainer.o.tmp ] || fail "temporary files left behind"
./trainer --data-dir "$tmp" --epochs 1 --threads 2 --progress=lines > aot.txt 2>&1 || { cat aot.txt; fail "trainer failed"; }
mv mlp_subset.nnqm aot.nnqm
"$NNQC" run b.nnq --data-dir "$tmp" --epochs 1 --threads 2 --progress=lines > jit.txt 2>&1 || { cat jit.txt; fail "nnqc run failed"; }
cmp aot.nnqm mlp_subset.nnqm || fail "trainer and nnqc run disagree"
./trainer --data-dir "$tmp" --epochs 2 --threads 2 --progress=lines --resume ck > resume.txt 2>&1 || { cat resume.txt; fail "trainer --resume failed"; }
grep -q "after epoch 1 of 2" resume.txt || { cat resume.txt; fail "the trainer did not resume"; }
mv mlp_subset.nnqm resumed.nnqm
"$NNQC" run b.nnq --data-dir "$tmp" --epochs 2 --threads 2 --progress=lines > jit2.txt 2>&1 || { cat jit2.txt; fail "nnqc run failed"; }
cmp resumed.nnqm mlp_subset.nnqm || fail "trainer --resume and an uninterrupted nnqc run disagree"
set +e
./trainer --bogus > bad.txt 2>&1; rc=$?
set -e
[ $rc -eq 2 ] && grep -q "unknown option '--bogus'" bad.txt || fail "unknown option: exit $rc"
# Buffers past what a trainer's code reaches by 32-bit offsets (its .bss): refused with
# both sizes before anything is written, not a linker's failure (relocations truncated).
sed -e 's/^\( *batch *= *\).*/\110000000/' b.nnq > huge.nnq
grep -q "^ *batch *= *10000000$" huge.nnq || fail "huge.nnq has no batch of 10^7"
set +e
"$NNQC" build huge.nnq -o huge_trainer > huge.txt 2>&1; rc=$?
set -e
[ $rc -eq 1 ] && grep -q "buffers need .* MiB, and a built trainer holds at most" huge.txt || { cat huge.txt; fail "huge buffers: exit $rc"; }
[ ! -e huge_trainer ] && ! ls huge_trainer* > /dev/null 2>&1 || fail "huge buffers: files left behind"
sed -e 's/validation = 10000/validation = 500/' "$SRC/examples/fashion_lenet5_pmf.nnq" > lenet.nnq
"$NNQC" build lenet.nnq -o lenet_trainer || fail "nnqc build (LeNet-5) failed"
./lenet_trainer --data-dir "$tmp" --epochs 1 --threads 2 --progress=lines > laot.txt 2>&1 || { cat laot.txt; fail "LeNet-5 trainer failed"; }
mv lenet5_binary.nnqm lenet_aot.nnqm
"$NNQC" run lenet.nnq --data-dir "$tmp" --epochs 1 --threads 1 --progress=lines > ljit.txt 2>&1 || { cat ljit.txt; fail "nnqc run (LeNet-5) failed"; }
cmp lenet_aot.nnqm lenet5_binary.nnqm || fail "LeNet-5: the trainer on 2 threads and nnqc run on 1 disagree"
echo "6 passed, 0 failed"
