# bench/lib.sh — helpers the benchmark scripts share (sourced).
# isa_avx2: what --isa avx2 sets: everything as on an AVX2-only CPU of the same clock:
# nnq's kernels and generated code (NNQ_ISA, runtime/isa.c), oneDNN and LIBXSMM through
# it, OpenBLAS (OPENBLAS_CORETYPE=Haswell), glibc's string functions (GLIBC_TUNABLES) and
# PyTorch (DNNL_MAX_CPU_ISA, ATEN_CPU_CAPABILITY).
isa_avx2() {
    export NNQ_ISA=avx2 OPENBLAS_CORETYPE=Haswell DNNL_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2
    export GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD
}

# json_num JSON KEY: the number KEY has in a one-line JSON object (bench/machine's).
json_num() { sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p" <<< "$1" | head -1; }

# gemm_floor FLOORS N: the GEMM floor in bench/machine's JSON at thread count N (1 or T):
# the faster of OpenBLAS on its own threads and nnq_rt_sgemm (oneDNN's sgemm where it
# runs AVX-512 code), so a library nnq does not use cannot lower it (Debian 12's OpenBLAS
# runs AVX2 kernels on AMD Zen 4 and 5: half of oneDNN's rate there).
gemm_floor() {
    num_max "$(json_num "$1" "sgemm_gflops_$2")" "$(json_num "$1" "nnq_sgemm_gflops_$2")"
}

# spread LIST: "MEDIAN LOW HIGH" of a list of numbers (the median the lower middle one of
# an even count, as it is written in the list), nothing for an empty list
spread() { tr ' ' '\n' <<< "$1" | sed '/^$/d' | sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)], v[1], v[NR] }'; }

# num_max A B: the larger of two numbers.
num_max() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b ? a : b) }'; }

# bench_program SOURCE VALIDATION OUT: a benchmark copy of a program (no checkpoints, no
# model file, VALIDATION images of the data subset for validation).
bench_program() {
    sed -e '/^ *checkpoint /d' -e '/^ *save /d' -e "s/^\( *validation *= *\).*/\1$2/" "$1" > "$3"
}

# step_workloads DIR BUILD W...: the data and programs of bench/thread_scaling.sh's and
# bench/compare.sh's workloads in DIR (BUILD: the build directory, for make_cifar; the
# caller has sourced tests/e2e/lib.sh): mlp_pmf and lenet5_pmf, binary PMF LeNet-300-100
# (bench/run's MLP) and LeNet-5 on a Fashion-MNIST subset (60 training iterations at
# batch 100); vgg16_pmf and resnet18_md, binary PMF VGG-16 and MD-tanh-S ResNet-18 on
# synthetic CIFAR files (5 iterations at batch 128); DIR/W.nnq each. Fails on a name it
# does not know.
step_workloads() {
    local dir="$1" build="$2" here w
    shift 2
    here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
    declare -A src=([mlp_pmf]="$dir/src_mlp_pmf.nnq" [lenet5_pmf]="$here/../examples/fashion_lenet5_pmf.nnq"
                    [vgg16_pmf]="$here/../examples/cifar10_vgg16_pmf.nnq"
                    [resnet18_md]="$here/../examples/cifar10_resnet18_md.nnq")
    declare -A val=([mlp_pmf]=6000 [lenet5_pmf]=6000 [vgg16_pmf]=640 [resnet18_md]=640)
    for w in "$@"; do
        [ -n "${src[$w]:-}" ] || { echo "no workload '$w' (mlp_pmf, lenet5_pmf, vgg16_pmf, resnet18_md)" >&2; return 2; }
    done
    make_subset "$dir" 12000 1000
    mkdir -p "$dir/cifar-10-batches-bin"
    "$build/tests/e2e/make_cifar" "$dir/cifar-10-batches-bin" 10 256 256 > /dev/null
    method_mlp pmf "$dir/src_mlp_pmf.nnq"
    for w in "$@"; do bench_program "${src[$w]}" "${val[$w]}" "$dir/$w.nnq"; done
}

# method_mlp METHOD OUT: bench/methods/common.nnq (LeNet-300-100) with the projection and
# beta schedule of bench/methods/METHOD.nnq.
method_mlp() {
    local dir f
    dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"; f="$dir/methods/$1.nnq"
    sed -e "s|@QUANT@|$(sed -n 's/^# quant: //p' "$f")|g" -e "s|@BETA@|$(sed -n 's/^# beta: //p' "$f")|" \
        "$dir/methods/common.nnq" > "$2"
}

# torch_python: a python3 that imports torch (Debian's python3-torch lives in the system
# python), or nothing.
torch_python() {
    local cand
    for cand in /usr/bin/python3 python3; do
        if command -v "$cand" > /dev/null && "$cand" -c 'import torch' 2> /dev/null; then echo "$cand"; return; fi
    done
}

# profile_ms LINE [PHASE]: from a --profile metrics line (its "profile" JSON object),
# milliseconds per training iteration from the second iteration's start to the last
# one's (the first pays for first touches of memory; what follows the last, the final
# model files and evaluations, is not a step's): of PHASE, or, without one, of every
# phase but evaluation (the step). Lines without "last_iteration", or of fewer than
# three iterations, run to the end.
profile_ms() {
    awk -v l="$1" -v want="${2:-}" 'BEGIN {
        n = split(l, part, /"(first|last)_iteration":/)
        iters = 0; sum = 0
        m = split(part[1], kv, /[{},]/)
        for (i = 1; i <= m; i++) {
            if (kv[i] ~ /"iterations":/) { split(kv[i], a, ":"); iters = a[2] }
            else if (kv[i] ~ /^"[a-z_]*":[0-9.]+$/) { split(kv[i], a, ":"); if (pick(a[1])) sum += a[2] }
        }
        steady = iters - 1
        if (n >= 3 && iters >= 3) { sum = total(part[3]); steady = iters - 2 }
        sum -= total(part[2])
        printf "%.3f", 1000 * sum / steady }
    function total(s,   kv, m, i, a, t) {
        m = split(s, kv, /[{},]/); t = 0
        for (i = 1; i <= m; i++)
            if (kv[i] ~ /^"[a-z_]*":[0-9.]+$/) { split(kv[i], a, ":"); if (pick(a[1])) t += a[2] }
        return t }
    function pick(k) { gsub(/"/, "", k); return want != "" ? k == want : k !~ /^(eval|peak_rss_mib|threads)$/ }'
}

# ir_counts NNQC PROGRAM: "PARAMS BN_FEATURES BNS" of a program, from nnqc --emit=ir.
ir_counts() {
    "$1" --emit=ir "$2" | awk '
        /^param @/ { s = $0; sub(/.*f32\[/, "", s); sub(/\].*/, "", s); n = split(s, d, ", "); c = 1; for (i = 1; i <= n; i++) c *= d[i]; p += c }
        /^bn @/ { f += $4; b++ }
        END { printf "%d %d %d\n", p, f, b }'
}

# update_bytes NNQC PROGRAM: the bytes one training step's update kernels read and write
# (each kernel's distinct arrays loaded plus those stored, 4 bytes an element, from
# nnqc --emit=ir): what the fused gradient -> projection -> optimizer pass must move.
update_bytes() {
    "$1" --emit=ir "$2" | awk '
        /^kernel @update\./ { inside = 1; n = $4; split("", ld); split("", st); next }
        inside && /^}/ { nl = 0; ns = 0; for (k in ld) nl++; for (k in st) ns++; bytes += 4 * n * (nl + ns); inside = 0; next }
        inside && / load [a-z0-9_]+\[i\]/ { s = $0; sub(/.* load /, "", s); sub(/\[.*/, "", s); ld[s] = 1 }
        inside && /^ *store [a-z0-9_]+\[i\]/ { s = $0; sub(/^ *store /, "", s); sub(/\[.*/, "", s); st[s] = 1 }
        END { printf "%.0f\n", bytes }'
}
