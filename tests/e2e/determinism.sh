#!/usr/bin/env bash
# The same seed and thread count give bitwise-identical final weights (the saved model
# files compare equal, as do the printed accuracies); another seed gives other weights.
# Neither the thread count nor layer fusion changes a bit: the MLP, LeNet-5 (conv,
# pooling, fused bias + batch norm + relu (+ maxpool) and relu (+ maxpool) + bn
# gradients), LeNet-5 with convolutions without bias (relu + maxpool fused) and a
# small network of the 3x3 convolutions that Winograd's F(2x2, 3x3) (with AVX2 code:
# deep_avx2) and oneDNN compute with two residual sums (deep_conv_subset.nnq:
# add + relu fused, forward and backward) and one of depthwise convolutions
# (dw_conv_subset.nnq: each batch norm + relu read by one fused into it) on 1, 2 and 3 threads, and with
# --no-fuse-layers, save the same model file and print the same accuracies (the
# evaluations run the fused eval forms: bias + batch norm + relu (+ maxpool)). The default
# thread count follows the CPUs the process may use (taskset).
set -eu
NNQC="$1"; SRC="$2"
. "$SRC/tests/e2e/lib.sh"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
make_subset "$tmp" 3000 500
sed -e 's/validation = 1000/validation = 500/' "$SRC/tests/e2e/mlp_subset.nnq" > "$tmp/det.nnq"
cd "$tmp"
for run in a b c; do
    seed=5; [ $run = c ] && seed=6
    "$NNQC" run det.nnq --data-dir "$tmp" --epochs 1 --threads 2 --seed $seed --progress=lines > $run.txt 2>&1 || { cat $run.txt; fail "run $run failed"; }
    mv mlp_subset.nnqm $run.nnqm
done
cmp a.nnqm b.nnqm || fail "same seed and threads gave different weights"
cmp -s a.nnqm c.nnqm && fail "a different seed gave identical weights"
[ "$(grep 'test accuracy' a.txt)" = "$(grep 'test accuracy' b.txt)" ] || fail "same seed gave different accuracies"
# deep_avx2: the deep network again with AVX2 code, where Winograd's rule takes its 16- and
# 32-channel layers (with AVX-512 code oneDNN keeps them: runtime/winograd.c)
progs="mlp lenet lenet_nobias deep dw"
grep -qw avx2 /proc/cpuinfo && progs="$progs deep_avx2"
for prog in $progs; do
    isa=""
    if [ $prog = mlp ]; then src=det.nnq; out=mlp_subset.nnqm
    elif [ $prog = deep ] || [ $prog = deep_avx2 ]; then src="$SRC/tests/e2e/deep_conv_subset.nnq"; out=deep_conv.nnqm
         [ $prog = deep_avx2 ] && isa=avx2
         ir=$("$NNQC" --emit=ir "$src")
         grep -q ' add_relu ' <<< "$ir" && grep -q ' add_relu_grad ' <<< "$ir" || fail "deep: no add_relu / add_relu_grad"
    elif [ $prog = dw ]; then src="$SRC/tests/e2e/dw_conv_subset.nnq"; out=dw_conv.nnqm
         ir=$("$NNQC" --emit=ir "$src")
         [ "$(grep -c ' dwconv2d_bn_relu ' <<< "$ir")" = 4 ] && [ "$(grep -c ' bias_bn_relu_stats_train ' <<< "$ir")" = 4 ] ||
             fail "dw: not four batch norms fused into their depthwise convolutions"
    else sed -e 's/validation = 10000/validation = 500/' -e 's/epochs *= 20/epochs = 1/' "$SRC/examples/fashion_lenet5_pmf.nnq" > lenet.nnq
         src=lenet.nnq; out=lenet5_binary.nnqm
         # with bias: each batch norm, its relu and the maxpool after them are one pass,
         # and the pool's gradient is routed in the batch norm's gradient
         if [ $prog = lenet ]; then ir=$("$NNQC" --emit=ir lenet.nnq); grep -q ' bias_bn_relu_maxpool_train ' <<< "$ir" ||
             fail "lenet: no bias_bn_relu_maxpool_train"
             [ "$(grep -c ' bias_relu_bn_maxpool_grad ' <<< "$ir")" = 2 ] || fail "lenet: not two bias_relu_bn_maxpool_grad"; fi
         # convolutions without bias: their batch norms stay bn_train, the relus fuse into
         # the maxpools (relu_maxpool) instead
         if [ $prog = lenet_nobias ]; then sed -i 's/5, quant = pmf(binary))/5, bias = false, quant = pmf(binary))/' lenet.nnq
             grep -q 'bias = false' lenet.nnq || fail "lenet_nobias: no convolution lost its bias"
             "$NNQC" --emit=ir lenet.nnq | grep -q relu_maxpool || fail "lenet_nobias: no relu_maxpool"; fi; fi
    for v in "--threads 1" "--threads 2" "--threads 3" "--threads 2 --no-fuse-layers"; do
        env ${isa:+NNQ_ISA=$isa} "$NNQC" run $src --data-dir "$tmp" --epochs 1 $v --progress=lines > v.txt 2>&1 ||
            { cat v.txt; fail "$prog $v failed"; }
        # the evaluations too: validation (soft and hard) and test accuracies
        grep -E '^epoch|^test accuracy' v.txt | sed 's/ *[0-9.]*s$//' > v.acc
        if [ "$v" = "--threads 1" ]; then mv $out ref.nnqm; mv v.acc ref.acc
        else cmp ref.nnqm $out || fail "$prog: $v changed the weights"
             cmp -s ref.acc v.acc || { diff ref.acc v.acc; fail "$prog: $v changed an evaluation"; }; fi
    done
done
# The default thread count is the CPUs the process may use (its affinity mask, its
# cgroup's CPU quota), not every online CPU: under `taskset -c 0` a run trains on one
# thread (it put two threads on one CPU: 1.55x the time); --threads still decides.
if command -v taskset > /dev/null && [ "$(nproc --all)" -gt 1 ]; then
    taskset -c 0 "$NNQC" run det.nnq --data-dir "$tmp" --epochs 1 --profile --progress=lines > t1.txt 2>&1 || { cat t1.txt; fail "taskset run failed"; }
    grep -q "^profile: [0-9]* training iterations on 1 thread," t1.txt || { grep "^profile" t1.txt; fail "taskset -c 0: not one thread"; }
    taskset -c 0 "$NNQC" run det.nnq --data-dir "$tmp" --epochs 1 --profile --threads 3 --progress=lines > t3.txt 2>&1 || { cat t3.txt; fail "--threads 3 run failed"; }
    grep -q "^profile: [0-9]* training iterations on 3 threads," t3.txt || { grep "^profile" t3.txt; fail "--threads 3 under taskset: not three threads"; }
fi
echo "$(( $(wc -w <<< "$progs") + 2 )) passed, 0 failed"
