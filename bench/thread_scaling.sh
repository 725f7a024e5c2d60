#!/usr/bin/env bash
# bench/thread_scaling.sh [--isa avx2] [--only W,W...] [--rounds N] [--torch] [THREADS...] — how one
# process's training step scales with the threads of its pool, on this machine. Builds
# first (tools/setup.sh). At each thread count (default 1, 2, 4, ... up to every CPU, and
# every CPU), with --profile:
#   - the GEMM floor at that count (build/bench/machine: the faster of OpenBLAS on its own
#     threads and nnq_rt_sgemm on the pool, 1024^3) and its speed-up over the first count;
#   - for each workload (mlp_pmf and lenet5_pmf: binary PMF LeNet-300-100 (bench/run's MLP)
#     and LeNet-5 on a Fashion-MNIST subset, batch 100; vgg16_pmf and resnet18_md: binary
#     PMF VGG-16 and MD-tanh-S ResNet-18 on synthetic CIFAR files, a few iterations at
#     batch 128; --only picks some): ms per training iteration (the first left out,
#     bench/lib.sh's profile_ms), the speed-up over the first count, the efficiency per
#     thread, and the step's ratio to the GEMM floor at that count;
#   - with --torch, where PyTorch is installed: its float step of the same network at
#     that count (bench/torch_compare.py), and nnq's step over it;
#   - each phase's speed-up over the first count (runtime/phases.def), so the phase that
#     stops scaling is named;
#   - with --rounds N (default 1), the whole sweep N times over, the counts in turn within
#     each round, so every speed-up is read from runs minutes apart at most: the table's
#     step the median over the rounds, its speed-up the median of the rounds' own (each
#     round's step at the count against that round's at the first count) with their
#     range, the phases those of the round whose step at the last count is the median. On a
#     shared machine whose speed moves from minute to minute (a 2-core VM: 1.63-1.94 for
#     VGG-16's two threads against one in four single readings within an hour), one pair
#     of runs says little about a speed-up.
# bench/run measures 1 thread and every CPU; this fills in the counts between, for the
# many-core machines a 2-core one cannot show (bench/bundle.sh takes this build to one
# without nnq's packages). --isa avx2: as bench/run's. Not a test: it prints numbers.
# About a minute on 2 cores; a few on 16.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
. "$here/lib.sh"
workloads=(mlp_pmf lenet5_pmf vgg16_pmf resnet18_md)
counts=()
torch=0
rounds=1
while [ $# -gt 0 ]; do
    case "$1" in
    --isa) [ "${2:-}" = avx2 ] || { echo "thread_scaling: --isa takes avx2" >&2; exit 2; }; isa_avx2; shift 2 ;;
    --only) IFS=, read -r -a workloads <<< "$2"; shift 2 ;;
    --torch) torch=1; shift ;;
    --rounds) [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "thread_scaling: --rounds takes a count" >&2; exit 2; }; rounds=$2; shift 2 ;;
    [0-9]*) counts+=("$1"); shift ;;
    *) echo "usage: bench/thread_scaling.sh [--isa avx2] [--only W,W...] [--rounds N] [--torch] [THREADS...]" >&2; exit 2 ;;
    esac
done
if [ -n "${NNQ_PREBUILT:-}" ]; then NNQ_BUILD_DIR="$NNQ_PREBUILT"   # a build from elsewhere (bench/bundle.sh): no set-up
else source "$root/tools/setup.sh" > /dev/null; fi
B="$NNQ_BUILD_DIR"
NNQC="$B/compiler/nnqc"
. "$root/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
N=$(nproc)
if [ ${#counts[@]} -eq 0 ]; then
    for ((t = 1; t < N; t *= 2)); do counts+=("$t"); done
    counts+=("$N")
fi

step_workloads "$tmp" "$B" "${workloads[@]}" || exit 2
declare -A tnet=([mlp_pmf]=mlp [lenet5_pmf]=lenet5 [vgg16_pmf]=vgg16 [resnet18_md]=resnet18)
py=""
if [ $torch = 1 ]; then
    py=$(torch_python)
    [ -n "$py" ] || echo "thread_scaling: --torch: no python3 with torch here; no PyTorch column" >&2
fi

echo "machine: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $N CPUs; ISA: $(grep -qw avx512f /proc/cpuinfo && echo AVX-512 || echo AVX2)${NNQ_ISA:+ (held to NNQ_ISA=$NNQ_ISA)}"
declare -A floor gflop ms prof tms
for t in "${counts[@]}"; do
    f=$("$B/bench/machine" "$t")
    floor[$t]=$(gemm_floor "$f" T)
done
echo "OpenBLAS's kernels: $(sed -n 's/.*"openblas_core":"\([^"]*\)".*/\1/p' <<< "$f")"
echo
one=${counts[0]}
last=${counts[-1]}
for w in "${workloads[@]}"; do
    gflop[$w]=$("$NNQC" --emit=ir "$tmp/$w.nnq" | sed -n 's/^; work at batch [0-9]*: \([0-9.e+-]*\) GFLOP.*/\1/p')
done
# rms[W.T.R]: the step of round R; rprof: its profile line
declare -A rms rprof
for ((r = 1; r <= rounds; r++)); do
    for w in "${workloads[@]}"; do
        for t in "${counts[@]}"; do
            (cd "$tmp" && "$NNQC" run "$w.nnq" --data-dir "$tmp" --epochs 1 --threads "$t" --progress=lines --profile \
                --no-cache --metrics "$w.$t.jsonl" > "$w.$t.out" 2>&1) ||
                { echo "$w at $t threads failed: $(tail -1 "$tmp/$w.$t.out")" >&2; continue; }
            rprof[$w.$t.$r]=$(grep '"profile"' "$tmp/$w.$t.jsonl")
            rms[$w.$t.$r]=$(profile_ms "${rprof[$w.$t.$r]}")
        done
    done
done
# per workload and count: the median step, and the median and range of the rounds' speed-ups
declare -A sp sprange
for w in "${workloads[@]}"; do
    for t in "${counts[@]}"; do
        steps=""; ups=""
        for ((r = 1; r <= rounds; r++)); do
            [ -n "${rms[$w.$t.$r]:-}" ] || continue
            steps+=" ${rms[$w.$t.$r]}"
            [ -n "${rms[$w.$one.$r]:-}" ] && ups+=" $(awk -v a="${rms[$w.$one.$r]}" -v b="${rms[$w.$t.$r]}" 'BEGIN { printf "%.3f", a / b }')"
        done
        read -r ms[$w.$t] _ _ <<< "$(spread "$steps")"
        read -r sp[$w.$t] lo hi <<< "$(spread "$ups")"
        sprange[$w.$t]="" # the range, where there are rounds to differ (the first count's are all 1)
        [ "$rounds" -gt 1 ] && [ "$t" != "$one" ] && [ -n "${sp[$w.$t]}" ] &&
            sprange[$w.$t]=$(awk -v lo="$lo" -v hi="$hi" 'BEGIN { printf " (%.2f-%.2f)", lo, hi }')
    done
    # the phases: of the round whose step at the last count is the median one
    pick=""
    mid=${ms[$w.$last]:-}
    for ((r = 1; r <= rounds; r++)); do [ "${rms[$w.$last.$r]:-}" = "$mid" ] && { pick=$r; break; }; done
    [ -n "$pick" ] || continue
    for t in "${counts[@]}"; do [ -n "${rprof[$w.$t.$pick]:-}" ] && prof[$w.$t]=${rprof[$w.$t.$pick]}; done
done
if [ -n "$py" ]; then
    nets=(); for w in "${workloads[@]}"; do nets+=("${tnet[$w]}"); done
    for t in "${counts[@]}"; do
        tj=$("$py" "$here/torch_compare.py" "$t" "${nets[@]}" 2> /dev/null || true)
        for w in "${workloads[@]}"; do tms[$w.$t]=$(sed -n "s/.*\"${tnet[$w]}\": \([0-9.]*\).*/\1/p" <<< "$tj"); done
    done
    echo "PyTorch $("$py" -c 'import torch; print(torch.__version__)'): float weights, the same network and batch (bench/torch_compare.py)"
    echo
fi

[ "$rounds" -gt 1 ] && echo "$rounds rounds: ms / step the median; speed-up the median of the rounds' own (their range)" && echo
printf '| threads | GEMM floor GFLOP/s (speed-up) |'
for w in "${workloads[@]}"; do
    printf ' %s ms / step | speed-up | per thread | x GEMM floor |' "$w"
    [ -z "$py" ] || printf ' PyTorch ms | nnq / PyTorch |'
done
printf '\n|---|---|'
for w in "${workloads[@]}"; do printf -- '---|---|---|---|'; [ -z "$py" ] || printf -- '---|---|'; done
echo
for t in "${counts[@]}"; do
    awk -v t="$t" -v f="${floor[$t]}" -v f1="${floor[$one]}" 'BEGIN { printf "| %d | %.1f (%.2f) |", t, f, f / f1 }'
    for w in "${workloads[@]}"; do
        if [ -z "${ms[$w.$t]:-}" ] || [ -z "${sp[$w.$t]:-}" ]; then
            printf ' failed | | | |'
        else
            awk -v m="${ms[$w.$t]}" -v s="${sp[$w.$t]}" -v rg="${sprange[$w.$t]}" -v t="$t" -v t1="$one" -v g="${gflop[$w]}" -v f="${floor[$t]}" \
                'BEGIN { printf " %.2f | %.2f%s | %.2f | %.2f |", m, s, rg, s / (t / t1), (m / 1000) / (g / f) }'
        fi
        [ -z "$py" ] || awk -v m="${ms[$w.$t]:-0}" -v p="${tms[$w.$t]:-0}" \
            'BEGIN { if (p > 0 && m > 0) printf " %.2f | %.2f |", p, m / p; else printf " | |" }'
    done
    echo
done

echo
echo "each phase's speed-up over $one thread(s): ms per step at $one -> at the count (speed-up):"
echo
printf '| workload | threads | phases |\n|---|---|---|\n'
for w in "${workloads[@]}"; do
    [ -n "${prof[$w.$one]:-}" ] || continue
    for t in "${counts[@]:1}"; do
        [ -n "${prof[$w.$t]:-}" ] || continue
        line="| $w | $t | "
        for p in $(sed 's/.*"seconds":{\([^}]*\)}.*/\1/' <<< "${prof[$w.$t]}" | tr ',' '\n' | cut -d'"' -f2); do
            case "$p" in eval | other) continue ;; esac
            a=$(profile_ms "${prof[$w.$one]}" "$p"); b=$(profile_ms "${prof[$w.$t]}" "$p")
            line+=$(awk -v p="$p" -v a="$a" -v b="$b" 'BEGIN { if (a >= 0.01 && b > 0) printf "%s %.2f -> %.2f (%.2f) · ", p, a, b, a / b }')
        done
        echo "$line |"
    done
done
