#!/usr/bin/env bash
# bench/infer.sh — the inference engine (runtime/infer.c, nnqc eval / predict) with
# packed weights against the float32 OpenBLAS evaluation of the same hard network, in
# one run: images/s at batch 1 and 100 on one thread for the binary MLP, LeNet-5 and
# VGG-16 (trained one short epoch on data subsets, synthetic CIFAR for VGG-16: the
# weights' values do not change the speed), the tensors' bytes as stored and as float32,
# each mode's peak resident memory, and the memory floor: at batch 1 a dense layer reads
# each weight once per image, so streaming the weights from DRAM bounds images/s by
# triad bandwidth / weight bytes — the 32x smaller packed weights raise that bound 32x,
# which matters once the float weights no longer fit in cache. Prints a Markdown table;
# on an AVX-512 CPU a second one with both engines limited to AVX2.
# Not a test. About a minute on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
source "$root/tools/setup.sh" > /dev/null
B="$NNQ_BUILD_DIR"; NNQC="$B/compiler/nnqc"
. "$root/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
floors=$("$B/bench/machine" 1)
bw=$(sed -n 's/.*"triad_gbs_1":\([0-9.]*\).*/\1/p' <<< "$floors")
echo "machine: $cpu; triad bandwidth $bw GB/s (1 thread)"

make_subset "$tmp" 6000 500
mkdir -p "$tmp/cifar-10-batches-bin"
"$B/tests/e2e/make_cifar" "$tmp/cifar-10-batches-bin" 10 256 128 > /dev/null
model() { # NAME SOURCE: train one short epoch, keep the model file
    sed -e '/^ *checkpoint /d' -e "s|^ *save .*|    save \"$1.nnqm\"|" -e 's/^\( *validation *= *\).*/\1128/' \
        -e 's/^\( *calibrate *= *\).*//' "$2" > "$tmp/$1.nnq"
    (cd "$tmp" && "$NNQC" run "$1.nnq" --data-dir "$tmp" --epochs 1 --quiet > "$1.out" 2>&1) || { cat "$tmp/$1.out"; exit 1; }
}
model mlp "$root/examples/fashion_mlp_pmf.nnq"
model lenet5 "$root/examples/fashion_lenet5_pmf.nnq"
model vgg16 "$root/examples/cifar10_vgg16_pmf.nnq"

num() { sed -n "s/.*\"$2\":\"*\([-0-9.a-z]*\).*/\1/p" <<< "$1"; }
table() { # ENV...: the table, every run under those environment settings
    printf '| model | batch | packed images/s | float images/s | packed / float | tensors stored | as float32 | peak RSS packed / float MiB | DRAM-bound images/s at batch 1, packed / float |\n'
    printf '|---|---|---|---|---|---|---|---|---|\n'
    local m b p f
    for m in mlp lenet5 vgg16; do
        for b in 1 100; do
            p=$(env "$@" "$B/bench/infer_bench" "$tmp/$m.nnqm" packed $b 1)
            f=$(env "$@" "$B/bench/infer_bench" "$tmp/$m.nnqm" float $b 1)
            awk -v m="$m" -v b="$b" -v pr="$(num "$p" images_per_s)" -v fr="$(num "$f" images_per_s)" \
                -v st="$(num "$p" file_tensor_bytes)" -v fl="$(num "$p" float_bytes)" -v pk="$(num "$p" peak_rss_kib)" \
                -v fk="$(num "$f" peak_rss_kib)" -v pw="$(num "$p" weight_bytes)" -v fw="$(num "$f" weight_bytes)" -v bw="$bw" \
                'BEGIN { printf "| %s | %d | %.0f | %.0f | %.2f | %.1f kB | %.1f kB | %.1f / %.1f | %.0f / %.0f |\n",
                         m, b, pr, fr, pr / fr, st / 1000, fl / 1000, pk / 1024, fk / 1024, bw * 1e9 / pw, bw * 1e9 / fw }'
        done
    done
    echo
    echo "packed kernel: $(num "$p" isa)"
}
table NNQ_BENCH=1
if grep -qw avx512f /proc/cpuinfo; then
    echo
    echo "The same limited to AVX2, as on an AVX2-only CPU (NNQ_ISA=avx2, OpenBLAS's Haswell"
    echo "kernels, oneDNN at most AVX2):"
    echo
    table NNQ_ISA=avx2 OPENBLAS_CORETYPE=Haswell DNNL_MAX_CPU_ISA=AVX2
fi
