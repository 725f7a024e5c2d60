#!/usr/bin/env bash
# bench/mpi_scaling.sh — data-parallel training on this machine, and a model of larger
# runs. Builds first (tools/setup.sh). For LeNet-5 (Fashion-MNIST subset, batch 100) and
# VGG-16 (synthetic CIFAR files, a few iterations at batch 128), with --profile:
#   - 1 process x 1 thread, 1 process x all CPUs, and mpirun -np <CPUs> x 1 thread each
#     (bound to a core): ms per training iteration (the first left out), the speed-up
#     over 1 x 1 and its efficiency per core, and ms per iteration in MPI all-reduces
#     (the "comm" phase on rank 0: transfers plus waiting for the other ranks);
#   - the model of docs/cluster.md: bytes all-reduced per iteration, compute time per
#     process (this machine's 1 x 1 step / N), and the predicted efficiency at 8, 32 and
#     128 processes on 10 and 100 Gbit/s links.
# Not a test: it prints numbers. A few minutes on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
source "$root/tools/setup.sh" > /dev/null
NNQC="$NNQ_BUILD_DIR/compiler/nnqc"
. "$root/tests/e2e/lib.sh"
. "$here/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
T=$(nproc)

make_subset "$tmp" 12000 1000
mkdir -p "$tmp/cifar-10-batches-bin"
"$NNQ_BUILD_DIR/tests/e2e/make_cifar" "$tmp/cifar-10-batches-bin" 10 256 256 > /dev/null
bench_program "$root/examples/fashion_lenet5_pmf.nnq" 6000 "$tmp/lenet5.nnq"
bench_program "$root/examples/cifar10_vgg16_pmf.nnq" 640 "$tmp/vgg16.nnq"

echo "machine: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $T CPUs; $(mpirun --version | head -1)"
echo
printf '| workload | config | ms / iteration | speed-up vs 1x1 | efficiency per core | ms in all-reduce |\n|---|---|---|---|---|---|\n'
declare -A one
for w in lenet5 vgg16; do
    for cfg in 1x1 "1x$T" "${T}x1"; do
        case $cfg in
        1x1) cmd=("$NNQC") thr=1 cores=1 ;;
        1x*) cmd=("$NNQC") thr=$T cores=$T ;;
        *) cmd=(mpirun -np "$T" --bind-to core "$NNQC") thr=1 cores=$T ;;
        esac
        (cd "$tmp" && "${cmd[@]}" run "$w.nnq" --data-dir "$tmp" --epochs 1 --threads $thr --progress=lines --profile \
            --metrics "$w.$cfg.jsonl" > "$w.$cfg.out" 2>&1) || { echo "| $w | $cfg | failed: $(tail -1 "$tmp/$w.$cfg.out") |"; continue; }
        prof=$(grep '"profile"' "$tmp/$w.$cfg.jsonl")
        ms=$(profile_ms "$prof"); comm=$(profile_ms "$prof" comm)
        [ "$cfg" = 1x1 ] && one[$w]=$ms
        awk -v w="$w" -v c="$cfg" -v ms="$ms" -v one="${one[$w]}" -v k="$cores" -v comm="$comm" \
            'BEGIN { printf "| %s | %s | %.1f | %.2f | %.2f | %.1f |\n", w, c, ms, one / ms, one / ms / k, comm }'
    done
done

echo
echo "Model (docs/cluster.md): ring all-reduce of the gradients, 2(N-1)/N x bytes / link rate + 2(N-1) x latency,"
echo "plus 4 latency-bound all-reduces per batch norm (2 log2 N x latency each); latency 20 us at 10 Gbit/s (TCP),"
echo "5 us at 100 Gbit/s (RDMA); compute per process = this machine's 1 x 1 step / N; no overlap."
echo
printf '| example | parameters | MB all-reduced / iteration | batch norms | compute ms / iteration / process (N = 8 / 32 / 128) | efficiency at 10 Gbit/s (8 / 32 / 128) | at 100 Gbit/s |\n|---|---|---|---|---|---|---|\n'
for w in lenet5 vgg16; do
    read -r params feats bns < <(ir_counts "$NNQC" "$tmp/$w.nnq")
    [ -n "${one[$w]:-}" ] || continue
    awk -v w="$w" -v p="$params" -v f="$feats" -v nb="$bns" -v t1="${one[$w]}" 'BEGIN {
        bytes = 4 * p
        split("8 32 128", ns, " ")
        comp = ""; e10 = ""; e100 = ""
        for (i = 1; i <= 3; i++) {
            n = ns[i]; tc = t1 / n
            comp = comp sprintf("%s%.1f", i > 1 ? " / " : "", tc)
            for (l = 1; l <= 2; l++) {
                bw = (l == 1 ? 10e9 : 100e9) / 8; lat = (l == 1 ? 20e-6 : 5e-6)
                ar = 2 * (n - 1) / n * bytes / bw + 2 * (n - 1) * lat + 4 * nb * 2 * log(n) / log(2) * lat
                eff = tc / (tc + 1000 * ar)
                s = sprintf("%s%.2f", i > 1 ? " / " : "", eff)
                if (l == 1) e10 = e10 s; else e100 = e100 s
            }
        }
        printf "| %s | %d | %.1f | %d | %s | %s | %s |\n", w, p, bytes / 1e6, nb, comp, e10, e100 }'
done
