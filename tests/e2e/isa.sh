#!/usr/bin/env bash
# $NNQ_ISA holds nnq below the CPU's instruction set, as on an older CPU: the generated
# code has no AVX-512 register under avx2 and no AVX one under portable (and AVX-512
# registers without it, where the CPU has them); a held run compiles anew rather than
# take the wider code from the compiled-code cache; LeNet-5 trains at each level (the
# runtime's kernels per level: tests/runtime/test_isa.c) and says which it ran; with
# OpenBLAS's kernels narrower than the CPU it trains as well, its products through oneDNN,
# and --profile says so; a trainer built for x86-64-v3 trains; a value that names no
# level is refused before anything runs.
set -eu
NNQC="$1"; SRC="$2"
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make_subset "$tmp" 3000 500
sed -e '/^ *checkpoint /d' -e 's/^\( *validation *= *\).*/\1500/' "$SRC/examples/fashion_lenet5_pmf.nnq" > "$tmp/l.nnq"
cd "$tmp"
unset NNQ_ISA
export NNQ_CACHE_DIR="$tmp/cache"
checks=0

regs() { # regs LEVEL REG: how many lines of the code generated for LEVEL name a %REG register
    NNQ_ISA="$1" "$NNQC" --emit=asm l.nnq > "asm.$1" || fail "NNQ_ISA=$1: nnqc --emit=asm failed"
    grep -c "%$2" "asm.$1" || true
}
[ "$(regs avx2 zmm)" = 0 ] || fail "NNQ_ISA=avx2: the generated code uses AVX-512 registers"
[ "$(regs portable zmm)" = 0 ] && [ "$(regs portable ymm)" = 0 ] || fail "NNQ_ISA=portable: the generated code uses AVX registers"
checks=$((checks + 2))
top=$(cpu_level)
if [ $top = avx512 ]; then
    [ "$(regs "" zmm)" -gt 0 ] || fail "the generated code uses no AVX-512 register on a CPU that has them"
    checks=$((checks + 1))
fi

# trains at every level, the CPU's own first (unset: it fills the cache); a level above
# the CPU's runs at the CPU's
held() {
    case "$top:$1" in
    portable:*) echo portable ;;
    avx2:avx512) echo avx2 ;;
    *) echo "$1" ;;
    esac
}
for isa in $top avx2 portable; do
    NNQ_ISA=$([ $isa = $top ] || echo $isa) "$NNQC" run l.nnq --data-dir "$tmp" --epochs 1 --progress=lines \
        --profile --metrics $isa.jsonl > $isa.out 2>&1 || { cat $isa.out; fail "NNQ_ISA=$isa: the run failed"; }
    want=$(held $isa)
    grep -q "^compiled in [0-9.]*s for $want" $isa.out || fail "NNQ_ISA=$isa: $(grep compiled $isa.out), not for $want"
    if [ $want != $top ]; then
        ! grep -q "compiled-code cache" $isa.out || fail "NNQ_ISA=$isa: took the $top code from the compiled-code cache"
    fi
    hard=$(json_field $isa.jsonl test_acc_hard)
    ge "$hard" 0.6 || fail "NNQ_ISA=$isa: hard-quantized test accuracy $hard < 0.6 after 25 iterations"
    echo "NNQ_ISA=$isa: $(grep compiled $isa.out), test accuracy $hard"
    checks=$((checks + 1))
done
levels=$(for isa in $top avx2 portable; do held $isa; done | sort -u | wc -l)
[ "$(ls cache | wc -l)" = "$levels" ] || fail "$levels levels compiled, $(ls cache | wc -l) cache files"
checks=$((checks + 1))

# OpenBLAS's kernels narrower than the CPU (an OpenBLAS older than the CPU chooses its SSE3
# ones): every product through oneDNN, the run as accurate, and --profile says so
if [ $top != portable ]; then
    OPENBLAS_CORETYPE=Prescott "$NNQC" run l.nnq --data-dir "$tmp" --epochs 1 --progress=lines --profile \
        --metrics generic.jsonl > generic.out 2>&1 || { cat generic.out; fail "OpenBLAS's Prescott kernels: the run failed"; }
    grep -q "^matrix products: oneDNN's sgemm (OpenBLAS chose its Prescott kernels, narrower than the CPU" generic.out ||
        fail "OpenBLAS's Prescott kernels: $(grep 'matrix products' generic.out)"
    hard=$(json_field generic.jsonl test_acc_hard)
    ge "$hard" 0.6 || fail "OpenBLAS's Prescott kernels: hard-quantized test accuracy $hard < 0.6 after 25 iterations"
    grep -q "^matrix products: .*OpenBLAS's [A-Za-z]* kernels" $top.out || fail "--profile names no library: $(grep 'matrix products' $top.out)"
    checks=$((checks + 1))
fi

# a trainer nnqc builds targets its level's generic x86-64 CPU and checks for it as it
# starts: held to avx2 (x86-64-v3, what an AVX2-only machine runs) it trains here
if [ $top != portable ]; then
    NNQ_ISA=avx2 "$NNQC" build l.nnq -o trainer.avx2 > build.out 2>&1 || { cat build.out; fail "NNQ_ISA=avx2: nnqc build failed"; }
    ./trainer.avx2 --data-dir "$tmp" --epochs 1 --progress=lines --metrics trainer.jsonl > trainer.out 2>&1 ||
        { cat trainer.out; fail "the trainer built for x86-64-v3 did not run on this CPU"; }
    hard=$(json_field trainer.jsonl test_acc_hard)
    ge "$hard" 0.6 || fail "the trainer built for x86-64-v3: hard-quantized test accuracy $hard < 0.6"
    checks=$((checks + 1))
fi

# a value that names no level
rm -f lenet5_binary.nnqm
if NNQ_ISA=avx3 "$NNQC" run l.nnq --data-dir "$tmp" --epochs 1 > bad.out 2>&1; then fail "NNQ_ISA=avx3 was accepted"; fi
grep -q 'nnq: error: NNQ_ISA is "avx3": expected avx512, avx2 or portable' bad.out || { cat bad.out; fail "NNQ_ISA=avx3: no clear error"; }
[ ! -e lenet5_binary.nnqm ] || fail "NNQ_ISA=avx3: a model file was written"
checks=$((checks + 1))
echo "$checks passed, 0 failed"
