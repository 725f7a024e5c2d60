#!/usr/bin/env bash
# nnq on CPUs this machine is not, emulated by QEMU's user mode (qemu-user; its TCG runs
# AVX2 code since QEMU 7.2, no AVX-512): an AMD EPYC of the Rome generation (AVX2 and FMA,
# no AVX-512: the kind of machine CI runs on) and an Intel Nehalem (SSE4.2, no AVX).
# - `nnqc run` compiles there for the CPU it runs on (avx2, portable) and trains the same
#   model, bit for bit, as this machine held to that level by $NNQ_ISA: the binary MLP;
#   LeNet-5, whose convolutions go through LIBXSMM and oneDNN, which choose their kernels
#   from the CPU's features; 3 x 3 layers by Winograd's transforms and oneDNN with
#   residual sums (deep_conv_subset.nnq); depthwise layers (dw_conv_subset.nnq). So runs
#   and benchmarks held to AVX2 here run the code an AVX2-only machine runs.
#   So do the trained models' predictions (nnqc predict: the packed engine's dispatched
#   kernels, and float32).
# - It does not take this machine's wider code from a shared compiled-code cache.
# - A trainer built for x86-64-v3 trains there the same model as here; on a CPU without
#   AVX2 (and one built for x86-64-v4 on a CPU without AVX-512) it refuses to start, with
#   a message, where it would die of SIGILL, and writes nothing.
# - $OPENBLAS_CORETYPE naming kernels the CPU lacks (Haswell's on a Nehalem) stops a run
#   and an evaluation with a message, where OpenBLAS would die of SIGILL.
# OpenBLAS chooses its kernels by CPU model; each comparison names the same ones on both
# sides ($OPENBLAS_CORETYPE), since its Zen and Haswell kernels round alike but are not
# promised to.
set -eu
NNQC="$1"; SRC="$2"
. "$SRC/tests/e2e/lib.sh"
command -v qemu-x86_64 >/dev/null || fail "qemu-x86_64 not found (apt-get install qemu-user)"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make_subset "$tmp" 300 100 # 2 steps of 100, each layer's every kernel: forward, gradients, update, evaluation
for prog in examples/fashion_mlp_pmf:mlp examples/fashion_lenet5_pmf:lenet tests/e2e/deep_conv_subset:deep \
            tests/e2e/dw_conv_subset:dw; do
    sed -e '/^ *checkpoint /d' -e 's/^\( *validation *= *\).*/\1100/' "$SRC/${prog%:*}.nnq" > "$tmp/${prog#*:}.nnq"
done
cd "$tmp"
unset NNQ_ISA
export NNQ_CACHE_DIR="$tmp/cache"
ROME=EPYC-Rome NEHALEM=Nehalem
top=$(cpu_level)

# emu CPU OUT COMMAND...: COMMAND on the emulated CPU, its output in OUT without QEMU's
# notes on the model's features TCG lacks; its status
emu() {
    local cpu="$1" out="$2" rc=0
    shift 2
    qemu-x86_64 -cpu "$cpu" "$@" > "$out" 2>&1 || rc=$?
    sed -i "/TCG doesn't support requested feature/d" "$out"
    return $rc
}
train() { echo --data-dir "$tmp" --epochs 1 --threads 2 --progress=lines; }

# same LEVEL CORE PROGRAM MODEL: nnqc run on CPU (emulated) equals this machine held to LEVEL
same() {
    local cpu="$1" level="$2" core="$3" prog="$4" model="$5"
    rm -f "$model"
    NNQ_ISA=$level OPENBLAS_CORETYPE=$core "$NNQC" run "$prog" $(train) > "here.$level.out" 2>&1 ||
        { cat "here.$level.out"; fail "$prog held to $level: the run failed"; }
    mv "$model" "here.$model"
    local rc=0
    OPENBLAS_CORETYPE=$core emu "$cpu" "$cpu.out" "$NNQC" run "$prog" $(train) --profile || rc=$?
    [ $rc = 0 ] || { cat "$cpu.out"; fail "$prog on an emulated $cpu: the run failed (status $rc)"; }
    grep -q "^compiled in [0-9.]*s for $level" "$cpu.out" || fail "$prog on $cpu: $(grep 'compiled' "$cpu.out"), not for $level"
    cmp -s "here.$model" "$model" ||
        fail "$prog on an emulated $cpu trained another model than this machine held to $level: $(grep '^test acc' "$cpu.out") against $(grep '^test acc' "here.$level.out")"
    # the model's predictions, by the packed engine and in float32, likewise
    local eng
    for eng in packed --float; do
        NNQ_ISA=$level OPENBLAS_CORETYPE=$core "$NNQC" predict "$model" $images -o here.npy --threads 2 \
            ${eng#packed} > here.pred.out 2>&1 || { cat here.pred.out; fail "$model held to $level: predict ($eng) failed"; }
        OPENBLAS_CORETYPE=$core emu "$cpu" pred.out "$NNQC" predict "$model" $images -o emu.npy --threads 2 ${eng#packed} ||
            { cat pred.out; fail "$model on an emulated $cpu: predict ($eng) failed"; }
        cmp -s here.npy emu.npy || fail "$model on an emulated $cpu: predict ($eng) gave other outputs than here held to $level"
    done
    echo "$prog on $cpu: $(grep '^compiled' "$cpu.out"), the model of NNQ_ISA=$level here, $(grep '^test acc' "$cpu.out");" \
        "its predictions (packed, float32) too"
}
images=fashion-mnist/t10k-images-idx3-ubyte.gz

# the cache holds this machine's own code first; the emulated CPU compiles its own
"$NNQC" run mlp.nnq $(train) > top.out 2>&1 || { cat top.out; fail "the MLP did not train here"; }
same $ROME avx2 Haswell mlp.nnq mlp_binary.nnqm
if [ $top = avx512 ]; then
    ! grep -q "compiled-code cache" $ROME.out || fail "on $ROME the MLP took this machine's AVX-512 code from the compiled-code cache"
fi
same $ROME avx2 Haswell lenet.nnq lenet5_binary.nnqm
same $ROME avx2 Haswell deep.nnq deep_conv.nnqm
same $ROME avx2 Haswell dw.nnq dw_conv.nnqm
same $NEHALEM portable Nehalem mlp.nnq mlp_binary.nnqm

# trainers: x86-64-v3 trains the same model there as here held to AVX2 (its runtime's
# kernels and the libraries' run at the CPU's level); refuses a CPU without AVX2
NNQ_ISA=avx2 "$NNQC" build mlp.nnq -o trainer.v3 > build.out 2>&1 || { cat build.out; fail "NNQ_ISA=avx2: nnqc build failed"; }
rm -f mlp_binary.nnqm
NNQ_ISA=avx2 OPENBLAS_CORETYPE=Haswell ./trainer.v3 $(train) > v3.here.out 2>&1 || { cat v3.here.out; fail "the x86-64-v3 trainer failed here"; }
mv mlp_binary.nnqm here.trainer.nnqm
OPENBLAS_CORETYPE=Haswell emu $ROME v3.rome.out ./trainer.v3 $(train) || { cat v3.rome.out; fail "the x86-64-v3 trainer failed on $ROME"; }
cmp -s here.trainer.nnqm mlp_binary.nnqm || fail "the x86-64-v3 trainer trained another model on $ROME than here"
echo "the x86-64-v3 trainer on $ROME: the model it trains here, $(grep '^test acc' v3.rome.out)"
refused() { # refused CPU OUT TRAINER MESSAGE
    rm -f mlp_binary.nnqm
    local rc=0
    OPENBLAS_CORETYPE=Nehalem emu "$1" "$2" "$3" $(train) || rc=$?
    [ $rc = 1 ] || { cat "$2"; fail "$3 on $1: status $rc (132: SIGILL), not 1"; }
    grep -qF "$4" "$2" || { cat "$2"; fail "$3 on $1: no clear refusal"; }
    [ ! -e mlp_binary.nnqm ] || fail "$3 on $1: a model file was written"
    echo "$3 on $1: $(cat "$2")"
}
refused $NEHALEM v3.nehalem.out ./trainer.v3 "was built for x86-64-v3 CPUs (AVX2), and this CPU lacks avx2: build it again on this machine, or build it with NNQ_ISA=portable"
if [ $top = avx512 ]; then
    "$NNQC" build mlp.nnq -o trainer.v4 > build.out 2>&1 || { cat build.out; fail "nnqc build failed"; }
    refused $ROME v4.rome.out ./trainer.v4 "was built for x86-64-v4 CPUs (AVX-512), and this CPU lacks avx512f: build it again on this machine, or build it with NNQ_ISA=avx2"
fi

# OpenBLAS told to run kernels this CPU lacks: a run and an evaluation stop with a message
why="OpenBLAS runs its Haswell kernels (OPENBLAS_CORETYPE=Haswell), which need avx2, and this CPU lacks it"
mv here.mlp_binary.nnqm model.nnqm
for what in run eval; do
    rc=0
    case $what in
    run) OPENBLAS_CORETYPE=Haswell emu $NEHALEM blas.$what.out "$NNQC" run mlp.nnq $(train) || rc=$? ;;
    eval) OPENBLAS_CORETYPE=Haswell emu $NEHALEM blas.$what.out "$NNQC" eval model.nnqm --data test mlp.nnq --data-dir "$tmp" || rc=$? ;;
    esac
    [ $rc != 0 ] && [ $rc -lt 128 ] || { cat blas.$what.out; fail "nnqc $what on $NEHALEM with OPENBLAS_CORETYPE=Haswell: status $rc"; }
    grep -qF "$why" blas.$what.out || { cat blas.$what.out; fail "nnqc $what on $NEHALEM with OPENBLAS_CORETYPE=Haswell: no clear error"; }
    echo "nnqc $what on $NEHALEM with OPENBLAS_CORETYPE=Haswell: $(grep -F "$why" blas.$what.out)"
done
echo "all passed"
