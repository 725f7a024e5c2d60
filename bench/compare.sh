#!/usr/bin/env bash
# bench/compare.sh [--isa avx2] [--only W,W...] [--threads T] [--pairs N] [--epochs E] NNQC_A NNQC_B —
# two builds of nnqc (two binaries: this tree's and another commit's, built in a git
# worktree) on the same workloads, in turns, on this machine: whether a change made a
# training step faster, read from runs seconds apart. For each workload of
# bench/thread_scaling.sh (--only picks some; default VGG-16 and LeNet-5) it runs N pairs
# (default 6) at T threads (default every CPU), E epochs of the workload's subset
# (default 1: 60 iterations of the MLP and LeNet-5, 5 of VGG-16 and ResNet-18), the pairs
# in the orders A B, B A, A B, ...; each run's step is bench/lib.sh's profile_ms (ms per
# training iteration, the first left out). It prints each pair's steps and ratio B / A,
# then:
#   - the median ratio and its range;
#   - B / A: the geometric mean of the ratios. A run's place in its pair (a machine whose
#     speed moves with a period of a few runs, or that is slower for the run after
#     another) multiplies the A B pairs' ratios by some p and the B A pairs' by 1 / p, so
#     over an even count of pairs it cancels out of this mean;
#   - that p, the order effect: the square root of the A B pairs' geometric mean over the
#     B A pairs' (above 1: the second run of a pair was the slower). On a 2-core VM, in
#     4-12 pairs of VGG-16: p = 0.89-1.06 in different hours, a larger effect than most
#     changes. The order effect beyond a few percent says the machine's noise is larger
#     than what is being measured; more pairs, or a quieter hour.
# Builds this tree first (tools/setup.sh) for its data tools. --isa avx2: as bench/run's.
# Not a test: it prints numbers, and never a verdict.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
. "$here/lib.sh"
workloads=(vgg16_pmf lenet5_pmf)
threads=$(nproc)
pairs=6
epochs=1
usage() { echo "usage: bench/compare.sh [--isa avx2] [--only W,W...] [--threads T] [--pairs N] [--epochs E] NNQC_A NNQC_B" >&2; exit 2; }
count() { [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "compare: $1 takes a count" >&2; exit 2; }; }
bins=()
while [ $# -gt 0 ]; do
    case "$1" in
    --isa) [ "${2:-}" = avx2 ] || { echo "compare: --isa takes avx2" >&2; exit 2; }; isa_avx2; shift 2 ;;
    --only) IFS=, read -r -a workloads <<< "${2:-}"; shift 2 ;;
    --threads) count "$1" "${2:-}"; threads=$2; shift 2 ;;
    --pairs) count "$1" "${2:-}"; pairs=$2; shift 2 ;;
    --epochs) count "$1" "${2:-}"; epochs=$2; shift 2 ;;
    -*) usage ;;
    *) bins+=("$(realpath "$1")"); shift ;;
    esac
done
[ ${#bins[@]} -eq 2 ] || usage
for b in "${bins[@]}"; do [ -x "$b" ] || { echo "compare: $b is not an nnqc binary" >&2; exit 2; }; done
source "$root/tools/setup.sh" > /dev/null
. "$root/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
step_workloads "$tmp" "$NNQ_BUILD_DIR" "${workloads[@]}" || exit 2

# step BIN W: one run's ms per iteration, or nothing where the run failed (said on stderr)
step() {
    if (cd "$tmp" && "$1" run "$2.nnq" --data-dir "$tmp" --epochs "$epochs" --threads "$threads" --progress=lines \
        --profile --no-cache --metrics run.jsonl > run.out 2>&1); then
        profile_ms "$(grep '"profile"' "$tmp/run.jsonl")"
    else
        echo "compare: $1 on $2 failed: $(tail -1 "$tmp/run.out")" >&2
    fi
}

echo "machine: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) CPUs${NNQ_ISA:+ (held to NNQ_ISA=$NNQ_ISA)}; $threads threads, $epochs epoch(s) a run"
echo "A: ${bins[0]}"
echo "B: ${bins[1]}"
for w in "${workloads[@]}"; do
    echo
    echo "| $w: pair | order | A ms / step | B ms / step | B / A |"
    echo "|---|---|---|---|---|"
    ratios=""; ab=""; ba=""
    for ((i = 1; i <= pairs; i++)); do
        if ((i % 2)); then order="A B"; a=$(step "${bins[0]}" "$w"); b=$(step "${bins[1]}" "$w")
        else order="B A"; b=$(step "${bins[1]}" "$w"); a=$(step "${bins[0]}" "$w"); fi
        [ -n "$a" ] && [ -n "$b" ] || continue
        q=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.4f", b / a }')
        echo "| $i | $order | $a | $b | $q |"
        ratios+=" $q"
        if ((i % 2)); then ab+=" $q"; else ba+=" $q"; fi
    done
    [ -n "$ratios" ] || continue
    read -r mid lo hi <<< "$(spread "$ratios")"
    awk -v w="$w" -v mid="$mid" -v lo="$lo" -v hi="$hi" -v all="$ratios" -v ab="$ab" -v ba="$ba" '
        function gm(list,   n, x, i, s) { n = split(list, x, " "); s = 0; for (i = 1; i <= n; i++) s += log(x[i]); return n ? exp(s / n) : 0 }
        BEGIN {
            printf "%s: B / A median %.3f (%.3f-%.3f) over %d pairs", w, mid, lo, hi, split(all, tmp, " ")
            printf "; geometric mean %.3f", gm(all)
            if (gm(ab) > 0 && gm(ba) > 0) printf "; order effect p = %.3f (second run of a pair / first)", sqrt(gm(ab) / gm(ba))
            print ""
        }'
done
