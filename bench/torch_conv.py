#!/usr/bin/env python3
"""bench/torch_conv.py [THREADS] — PyTorch's CPU convolutions (oneDNN, as Debian's
python3-torch is built) on the layer shapes of bench/conv_bench.c, in GFLOP/s: forward,
input gradient and weight gradient, each the best of several calls. Optional (never in
CI): it puts the library PyTorch uses beside nnq's own chunked im2col + GEMM path."""
import sys
import time

import torch

LAYERS = [("LeNet-5 conv1, batch 100", 100, 1, 28, 28, 20, 5, 1, 0), ("LeNet-5 conv2", 100, 20, 12, 12, 50, 5, 1, 0),
          ("VGG-16 64 -> 64 at 32x32, batch 128", 128, 64, 32, 32, 64, 3, 1, 1),
          ("VGG-16 128 -> 128 at 16x16", 128, 128, 16, 16, 128, 3, 1, 1),
          ("VGG-16 256 -> 256 at 8x8", 128, 256, 8, 8, 256, 3, 1, 1),
          ("VGG-16 512 -> 512 at 4x4", 128, 512, 4, 4, 512, 3, 1, 1),
          ("VGG-16 512 -> 512 at 2x2", 128, 512, 2, 2, 512, 3, 1, 1),
          ("ResNet-18 128 -> 128 stride 2", 128, 64, 32, 32, 128, 3, 2, 1)]


def best(f, reps=5):
    f()
    t = 1e30
    for _ in range(reps):
        s = time.perf_counter()
        f()
        t = min(t, time.perf_counter() - s)
    return t


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads()
    torch.set_num_threads(threads)
    print(f"PyTorch {torch.__version__}, {threads} threads, mkldnn {torch.backends.mkldnn.is_available()}\n")
    print("| layer | conv2d GFLOP/s | dx GFLOP/s | dw GFLOP/s |\n|---|---|---|---|")
    with torch.no_grad():
        for what, n, c, h, w, o, k, s, p in LAYERS:
            x, wt = torch.randn(n, c, h, w), torch.randn(o, c, k, k)
            y = torch.nn.functional.conv2d(x, wt, stride=s, padding=p)
            dy = torch.randn_like(y)
            flops = 2.0 * n * o * c * k * k * y.shape[2] * y.shape[3]

            def bwd(mask):
                return lambda: torch.ops.aten.convolution_backward(dy, x, wt, None, [s, s], [p, p], [1, 1], False,
                                                                   [0, 0], 1, mask)
            r = [flops / best(lambda: torch.nn.functional.conv2d(x, wt, stride=s, padding=p)) * 1e-9,
                 flops / best(bwd([True, False, False])) * 1e-9, flops / best(bwd([False, True, False])) * 1e-9]
            print(f"| {what} | {r[0]:.1f} | {r[1]:.1f} | {r[2]:.1f} |")


if __name__ == "__main__":
    main()
