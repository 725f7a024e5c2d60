#!/usr/bin/env bash
# The compiled-code cache: a first run stores one cache file, a second run of the same
# program loads it ("from the compiled-code cache") and trains to the same model file;
# a damaged cache file is ignored, recompiled and rewritten; another program gets an
# entry of its own; --no-cache neither reads nor writes it; past NNQ_CACHE_MAX the entries
# used longest ago go. The first run's --profile
# line in the metrics counts the iterations trained and charges time to the MLP's phases
# (GEMM, batch norm, update) and none to convolutions, with the totals when the second
# and the last iteration began. Code generation on 1 and 2 threads: the cache file holds
# one and two objects (jit.c's partitions), each defining the fused kernels' code it
# calls (a function and the callees it may inline stay together), and both train to the
# same model file as the default run of the same program. NNQ_JITDUMP=1 writes the
# generated functions to a jitdump file for perf and trains the same model. A cache
# directory that others may write is not used. Another build of nnqc stores an entry of
# its own.
set -eu
NNQC="$1"; SRC="$2"
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make_subset "$tmp" 2000 300
sed -e 's/validation = 1000/validation = 300/' "$SRC/tests/e2e/mlp_subset.nnq" > "$tmp/c.nnq"
cd "$tmp"
export NNQ_CACHE_DIR="$tmp/cache"
run() { # NAME [options]: trains c.nnq, keeps its output and model as NAME.*
    local name=$1; shift
    "$NNQC" run c.nnq --data-dir "$tmp" --epochs 1 --progress=lines --profile "$@" > "$name.out" 2>&1 || { cat "$name.out"; fail "$name failed"; }
    mv mlp_subset.nnqm "$name.nnqm"
}
run first --metrics first.jsonl
prof=$(grep '"profile":true' first.jsonl) || fail "no profile line in the metrics"
phase() { sed -n "s/.*\"${2:-seconds}\":{[^}]*\"$1\":\([0-9.]*\).*/\1/p" <<< "$prof"; }
iters=$(sed -n 's/.*"iterations":\([0-9]*\).*/\1/p' <<< "$prof")
[ "$iters" = 17 ] || fail "profile counted $iters iterations, not 17 (1700 training samples at batch 100)"
for p in gemm norm update; do ge "$(phase $p)" 0.000001 || fail "profile: no time in $p: $prof"; done
for p in conv conv_dx conv_dw pool; do [ "$(phase $p)" = 0.000000 ] || fail "profile: time in $p for an MLP: $prof"; done
# the totals when the second and the last iteration began, then at the end: the updates
# of iterations 2..16 lie between the first two, the model file written after the last
# between the last two
for p in gemm update; do
    gt "$(phase $p last_iteration)" "$(phase $p first_iteration)" && ge "$(phase $p)" "$(phase $p last_iteration)" ||
        fail "profile: $p not counted by iterations: $prof"
done
gt "$(phase other)" "$(phase other last_iteration)" || fail "profile: nothing after the last iteration: $prof"
grep -q "^update " first.out || fail "no profile table printed"
grep -q "^compiled in" first.out && ! grep -q "compiled-code cache" first.out || fail "first run: $(grep compiled first.out)"
[ "$(ls cache | wc -l)" = 1 ] && ls cache/*.o > /dev/null || fail "first run did not store one cache file: $(ls cache)"
run second
grep -q "(from the compiled-code cache)" second.out || fail "second run did not use the cache"
cmp first.nnqm second.nnqm || fail "the cached code trained differently"
f=$(ls cache/*.o)
printf 'XXXX' | dd of="$f" bs=1 seek=4000 conv=notrunc status=none   # damage the object
run third
! grep -q "compiled-code cache" third.out || fail "a damaged cache file was used"
cmp first.nnqm third.nnqm || fail "recompiling after a damaged cache file trained differently"
run fourth
grep -q "(from the compiled-code cache)" fourth.out || fail "the damaged cache file was not rewritten"
sed -i "s/seed *= *[0-9]*/seed = 11/" c.nnq
run other
! grep -q "compiled-code cache" other.out && [ "$(ls cache | wc -l)" = 2 ] || fail "another program reused an entry: $(ls cache)"
for t in 1 2; do # the number of objects: a u32 after the 8-byte magic
    rm -rf cache
    run threads$t --threads $t
    objs=$(od -An -tu4 -j8 -N4 cache/*.o | tr -d ' ')
    [ "$objs" = $t ] || fail "code generated on $t threads: $objs objects in the cache file"
    cmp other.nnqm threads$t.nnqm || fail "code generated on $t threads trained differently"
    # each object: its length (u64) and CRC (u32), then the ELF file. A fused kernel's
    # loop (NAME.core) may be inlined into its caller (the thread pool's body), so the
    # object that defines the body defines the loop; one taken from another object was
    # split from its caller. Its launcher (NAME.shape) is called from nnq_main's tables,
    # through its address: a run has no function per parameter and kernel
    # (kernel.KIND.PARAM, 12,000 of them for 1,500 layers, each a cost to LLVM).
    off=12
    for i in $(seq "$t"); do
        len=$(od -An -tu8 -j$off -N8 cache/*.o | tr -d ' ')
        dd if="$(ls cache/*.o)" of=obj$i.o bs=1 skip=$((off + 12)) count="$len" status=none
        off=$((off + 12 + len))
        nm obj$i.o | grep -q ' T nnq_main$\| [Tt] kernel\.' || fail "object $i of $t defines no code"
        ! nm -u obj$i.o | grep '\.core$' || fail "object $i of $t takes a fused kernel's loop from another object"
        ! nm obj$i.o | grep ' [TtU] kernel\.[a-z]*\.dense[0-9]*\.[wb]$' || fail "object $i of $t has a kernel entry per parameter"
    done
done
rm -rf cache
run nocache --no-cache
[ ! -e cache ] || fail "--no-cache wrote the cache"
# The bound (NNQ_CACHE_MAX): storing an entry that takes the cache past it removes the
# entries used longest ago, a hit counting as a use; a temporary left by a run killed
# while storing goes once it is an hour old. Three programs (seeds 21, 22, 23) under a
# bound of two and a half entries: 21 and 22 stored, 21 used again, 23 stored: 22 goes.
seedrun() { # SEED: trains c.nnq with that seed
    sed "s/seed *= *[0-9]*/seed = $1/" c.nnq > s$1.nnq
    "$NNQC" run s$1.nnq --data-dir "$tmp" --epochs 1 --progress=lines --profile > s$1.out 2>&1 || { cat s$1.out; fail "seed $1 failed"; }
}
mkdir cache
seedrun 21; e21=$(ls cache)
export NNQ_CACHE_MAX=$(( $(stat -c %s cache/$e21) * 5 / 2 ))
seedrun 22; e22=$(ls cache | grep -vx "$e21")
old_tmp=0123456789abcdef0123456789abcdef.o.999.tmp new_tmp=fedcba9876543210fedcba9876543210.o.998.tmp
touch -d '2 hours ago' cache/$old_tmp; touch cache/$new_tmp
seedrun 21
grep -q "(from the compiled-code cache)" s21.out || fail "seed 21 again did not use the cache"
seedrun 23
left=$(ls cache | tr '\n' ' ')
[ -e cache/$e21 ] && [ ! -e cache/$e22 ] && [ "$(ls cache/*.o | wc -l)" = 2 ] && [ ! -e cache/$old_tmp ] && [ -e cache/$new_tmp ] ||
    fail "the cache bound: expected $e21, a new entry and $new_tmp, found $left"
rc=0; NNQ_CACHE_MAX=12X "$NNQC" run c.nnq --data-dir "$tmp" --epochs 1 > bad.out 2>&1 || rc=$?
[ $rc = 2 ] && grep -q "error: NNQ_CACHE_MAX is '12X': the compiled-code cache's size" bad.out || fail "NNQ_CACHE_MAX=12X: exit $rc, $(cat bad.out)"
unset NNQ_CACHE_MAX
rm -rf cache
# NNQ_JITDUMP=1: LLVM's perf listener writes the generated functions to a jitdump file
# (its magic "JiTD", then a record per function with its name), for `perf inject --jit`
NNQ_JITDUMP=1 JITDUMPDIR="$tmp/jd" run jitdump --no-cache
cmp other.nnqm jitdump.nnqm || fail "a run with NNQ_JITDUMP=1 trained differently"
dump=$(find "$tmp/jd" -name 'jit-*.dump' | head -1)
[ -n "$dump" ] && [ "$(head -c 4 "$dump" | od -An -tx4 | tr -d ' ')" = 4a695444 ] || fail "NNQ_JITDUMP=1 wrote no jitdump file"
for f in train_step kernel.update.dense1.w.body; do
    grep -aq "$f" "$dump" || fail "the jitdump file does not name $f"
done
rc=0; NNQ_JITDUMP=yes "$NNQC" run c.nnq --data-dir "$tmp" --epochs 1 > bad.out 2>&1 || rc=$?
[ $rc = 1 ] && grep -q 'error: NNQ_JITDUMP is "yes": expected 0 or 1' bad.out || fail "NNQ_JITDUMP=yes: exit $rc, $(cat bad.out)"
# a cache directory others may write is not used (its objects run as code), with a note;
# made private, it is
mkdir -m 777 shared
NNQ_CACHE_DIR="$tmp/shared" run shared
grep -q "note: not using the compiled-code cache '$tmp/shared': others may write it" shared.out || fail "no note for a cache others may write: $(cat shared.out)"
[ -z "$(ls shared)" ] || fail "a cache others may write was filled: $(ls shared)"
chmod go-w shared
NNQ_CACHE_DIR="$tmp/shared" run private
! grep -q "not using the compiled-code cache" private.out && [ -n "$(ls shared)" ] || fail "a private cache directory was not used: $(cat private.out)"
# another build of nnqc (here: the same executable, copied, its modification time moved)
# does not load what this one stored: code generation after the key's module text
# (partitions, exported symbols) may differ between builds of one version
mkdir rebuilt && cp "$NNQC" rebuilt/nnqc && touch -d '2001-01-01' rebuilt/nnqc
NNQ_CACHE_DIR="$tmp/shared" run again
grep -q "(from the compiled-code cache)" again.out || fail "the same build did not use its cache"
n=$(ls shared/*.o | wc -l)
NNQC="$tmp/rebuilt/nnqc" NNQ_CACHE_DIR="$tmp/shared" run rebuilt
! grep -q "compiled-code cache" rebuilt.out && [ "$(ls shared/*.o | wc -l)" = $((n + 1)) ] ||
    fail "another build of nnqc loaded this one's cache entry: $(grep compiled rebuilt.out)"
cmp -s rebuilt.nnqm private.nnqm || fail "the other build trained another model"
echo "16 passed, 0 failed"
