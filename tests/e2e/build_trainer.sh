#!/usr/bin/env bash
# nnqc build writes a standalone trainer; run without the compiler it trains exactly as
# `nnqc run` does (bitwise-identical saved weights for the same seed, on any thread
# count: LeNet-5's trainer on 2 threads against nnqc run on 1, convolutions, pooling and
# fused batch norm included; the JIT keeps the program's buffers in a mapping of its
# own, the trainer in .bss), also with buffers past 2 GiB, it
# resumes from its checkpoint (--resume) to the model `nnqc run` trains uninterrupted,
# and it rejects unknown options and bad option values (naming what the option takes) with status 2, and output lost on standard output with 1. A program whose buffers pass the
# machine's memory and swap is refused with a message.
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
[ -z "$(ls -A | grep "^trainer\..*tmp$")" ] || fail "temporary files left behind: $(ls -A | grep tmp)"
./trainer --data-dir "$tmp" --epochs 1 --threads 2 --progress=lines > aot.txt 2>&1 || { cat aot.txt; fail "trainer failed"; }
mv mlp_subset.nnqm aot.nnqm
# Three builds of one trainer side by side: each links objects of its own (OUT.PID.I.o.tmp),
# every one succeeds, and what is left under the name trains the same model. (With shared
# names they truncated and rewrote each other's objects.)
pids=""; for i in 1 2 3; do "$NNQC" build b.nnq -o par > "par$i.out" 2>&1 & pids="$pids $!"; done
for p in $pids; do wait "$p" || { cat par*.out; fail "a build beside two others failed"; }; done
[ -z "$(ls -A | grep "^par\..*tmp$")" ] || fail "builds side by side left temporary files: $(ls -A | grep tmp)"
./par --data-dir "$tmp" --epochs 1 --threads 2 --progress=lines > par.txt 2>&1 || { cat par.txt; fail "the trainer built beside others failed"; }
cmp aot.nnqm mlp_subset.nnqm || fail "a trainer built beside others trains another model"
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
[ $rc -eq 2 ] && grep -q "unknown option '--bogus' (see --help)" bad.txt || fail "unknown option: exit $rc"
set +e
./trainer --epoch=2 > bad.txt 2>&1; rc=$?
set -e
[ $rc -eq 2 ] && grep -qF "unknown option '--epoch=2'; did you mean '--epochs'? (see --help)" bad.txt || { cat bad.txt; fail "--epoch=2: exit $rc"; }
# standard output closed: the metrics file holds its JSON lines only (it used to get
# descriptor 1 and the epoch lines), exit 1
set +e
./trainer --data-dir "$tmp" --epochs 1 --metrics closed.jsonl --progress=lines >&- 2> closed.txt; rc=$?
set -e
[ $rc -eq 1 ] && grep -q "cannot write standard output" closed.txt || { cat closed.txt; fail "stdout closed: exit $rc"; }
[ -s closed.jsonl ] && [ -z "$(grep -v '^{' closed.jsonl)" ] && grep -q '"final":true' closed.jsonl || { cat closed.jsonl; fail "stdout closed: epoch lines in the metrics file, or no final line"; }
# a bad option value: exit 2 and what the option takes
for arg in "--threads 0|--threads takes a whole number from 1 to 1024, not '0'" \
           "--epochs=2e3|--epochs takes a whole number from 1 to 1000000, not '2e3'" \
           "--progress=bars|--progress takes bar, lines or auto, not 'bars'" \
           "--quiet=yes|--quiet takes no value" \
           "--seed|--seed needs a value"; do
    set +e
    ./trainer ${arg%%|*} > bad.txt 2>&1; rc=$?
    set -e
    [ $rc -eq 2 ] && grep -qF -- "${arg#*|}" bad.txt || { cat bad.txt; fail "${arg%%|*}: exit $rc"; }
done
# its epoch lines lost to a full disk: exit 1 and a message (it exited 0), the model saved
if [ -w /dev/full ]; then
    rm -f mlp_subset.nnqm
    set +e
    ./trainer --data-dir "$tmp" --epochs 1 > /dev/full 2> full.txt; rc=$?
    set -e
    [ $rc -eq 1 ] && grep -q "error: cannot write standard output" full.txt && [ -s mlp_subset.nnqm ] ||
        { cat full.txt; fail "a trainer's standard output on a full disk: exit $rc"; }
fi
# A build ended by a signal while it links leaves nothing beside its output: the linker
# here (CC) writes a partial OUT.PID.tmp, sends nnqc SIGTERM, and would write more a
# second later. nnqc passes the signal to the linker's process group, waits for it,
# removes its objects and the partial output, and is killed by SIGTERM (status 143).
# Before, the objects were left (and without the linker stopped, its later output).
cat > slowcc << 'EOF'
#!/bin/sh
echo partial > "$2"
kill -TERM $PPID
sleep 1
echo more > "$2"
sleep 30
EOF
chmod +x slowcc
set +e
CC="$tmp/slowcc" timeout 20 "$NNQC" build b.nnq -o sig > sigbuild.txt 2>&1; rc=$?
set -e
sleep 2 # past the linker's second write, had it gone on
[ $rc -eq 143 ] && [ -z "$(ls -A | grep "^sig\.")" ] ||
    { cat sigbuild.txt; fail "a build ended by SIGTERM while linking: exit $rc, left: $(ls -A | grep "^sig\\." | tr '\n' ' ')"; }
# A failing linker: its messages reach nnqc's standard error (through the pipe nnqc reads
# them from), the build exits 1 and leaves nothing.
printf '#!/bin/sh\necho "ld: cannot find -lnosuchlib" >&2\nexit 1\n' > badcc; chmod +x badcc
set +e
CC="$tmp/badcc" "$NNQC" build b.nnq -o nolink > badbuild.txt 2>&1; rc=$?
set -e
[ $rc -eq 1 ] && grep -q "^ld: cannot find -lnosuchlib" badbuild.txt && grep -q "linking nolink failed" badbuild.txt &&
    [ -z "$(ls -A | grep "^nolink")" ] || { cat badbuild.txt; fail "a failing linker: exit $rc, left: $(ls -A | grep "^nolink" | tr '\n' ' ')"; }
# Buffers past 2 GiB, which the code reaches through the GOT (common symbols at the end of
# .bss, linked with --no-relax; at 32-bit offsets the link failed, "relocations truncated
# to fit"): the trainer trains as nnqc run does. 3.4 GB of buffers, run where there is
# room for them.
cat > wide.nnq << 'EOF'
model wide(x: f32[1, 28, 28]) -> f32[10] {
    h = maxpool(relu(conv2d(x, 512, 1)), 4)
    return dense(flatten(h), 10)
}
data train = idx("fashion-mnist/train-images-idx3-ubyte.gz",
                 "fashion-mnist/train-labels-idx1-ubyte.gz", normalize = standard)
train wide on train {
    optimizer  = adam(lr = 1e-3)
    epochs     = 1
    batch      = 700
    seed       = 1
    validation = 500
    save "wide.nnqm"
}
EOF
avail_mib=$(awk '/^MemAvailable:/ { printf "%d", $2 / 1024 }' /proc/meminfo)
if [ "${avail_mib:-0}" -gt 8000 ]; then
    "$NNQC" build wide.nnq -o wide_trainer || fail "nnqc build (3.4 GB of buffers) failed"
    bss=$(size -A wide_trainer | awk '$1 == ".bss" { print $2 }')
    [ "${bss:-0}" -gt 2147483648 ] || fail "the wide trainer's .bss is ${bss:-?} bytes, not past 2 GiB"
    ./wide_trainer --data-dir "$tmp" --threads 2 --progress=lines > wide_aot.txt 2>&1 || { cat wide_aot.txt; fail "wide trainer failed"; }
    mv wide.nnqm wide_aot.nnqm
    "$NNQC" run wide.nnq --data-dir "$tmp" --threads 1 --progress=lines > wide_jit.txt 2>&1 || { cat wide_jit.txt; fail "nnqc run (wide) failed"; }
    cmp wide_aot.nnqm wide.nnqm || fail "wide: the trainer on 2 threads and nnqc run on 1 disagree"
    rm -f wide_trainer wide_aot.nnqm wide.nnqm
else
    echo "skipped the 3.4 GB trainer: $avail_mib MiB available"
fi
# Buffers more than 2 GiB from the code (a batch of 700,000 images: 2.2 GB of them before
# the others): GNU ld rewrites GOT loads into 32-bit offsets unless told not to (link.c's
# --no-relax), and failed; built only.
sed -e 's/^\( *batch *= *\).*/\1700000/' -e 's/^    h = maxpool.*/    h = x/' wide.nnq > far.nnq
grep -q "^    h = x$" far.nnq || fail "far.nnq was not made"
"$NNQC" build far.nnq -o far_trainer > far.txt 2>&1 || { cat far.txt; fail "nnqc build (buffers 2 GiB away) failed"; }
bss=$(size -A far_trainer | awk '$1 == ".bss" { print $2 }')
[ "${bss:-0}" -gt 2147483648 ] || fail "the far trainer's .bss is ${bss:-?} bytes, not past 2 GiB"
rm -f far_trainer
# Buffers past the machine's memory and swap, where Linux would not start the trainer
# (its .bss): refused with both sizes before anything is written, not a trainer that dies
# at start.
sed -e 's/^\( *batch *= *\).*/\11000000000/' b.nnq > huge.nnq
grep -q "^ *batch *= *1000000000$" huge.nnq || fail "huge.nnq has no batch of 10^9"
set +e
"$NNQC" build huge.nnq -o huge_trainer > huge.txt 2>&1; rc=$?
set -e
[ $rc -eq 1 ] && grep -q "buffers need .* MiB, more than this machine's memory and swap" huge.txt || { cat huge.txt; fail "huge buffers: exit $rc"; }
[ ! -e huge_trainer ] && ! ls huge_trainer* > /dev/null 2>&1 || fail "huge buffers: files left behind"
# An output in a directory that does not exist: refused, naming the trainer, before the
# compile (it named a temporary object file, after compiling the whole program).
set +e
"$NNQC" build b.nnq -o nodir/t > nodir.txt 2>&1; rc=$?
set -e
[ $rc -eq 1 ] && grep -q "error: cannot write the trainer 'nodir/t': No such file or directory" nodir.txt ||
    { cat nodir.txt; fail "output in a missing directory: exit $rc"; }
mkdir -p adir
set +e
"$NNQC" build b.nnq -o adir > adir.txt 2>&1; rc=$?
set -e
[ $rc -eq 1 ] && grep -q "error: cannot write the trainer 'adir': it is a directory" adir.txt ||
    { cat adir.txt; fail "output that is a directory: exit $rc"; }
sed -e 's/validation = 10000/validation = 500/' "$SRC/examples/fashion_lenet5_pmf.nnq" > lenet.nnq
"$NNQC" build lenet.nnq -o lenet_trainer || fail "nnqc build (LeNet-5) failed"
./lenet_trainer --data-dir "$tmp" --epochs 1 --threads 2 --progress=lines > laot.txt 2>&1 || { cat laot.txt; fail "LeNet-5 trainer failed"; }
mv lenet5_binary.nnqm lenet_aot.nnqm
"$NNQC" run lenet.nnq --data-dir "$tmp" --epochs 1 --threads 1 --progress=lines > ljit.txt 2>&1 || { cat ljit.txt; fail "nnqc run (LeNet-5) failed"; }
cmp lenet_aot.nnqm lenet5_binary.nnqm || fail "LeNet-5: the trainer on 2 threads and nnqc run on 1 disagree"
echo "7 passed, 0 failed"
