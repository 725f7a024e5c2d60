#!/usr/bin/env python3
"""bench/torch_compare.py [THREADS [NETWORK...]] — the same networks trained by PyTorch on
this CPU, for bench/run's and bench/thread_scaling.sh's side-by-side columns (optional:
needs Debian's python3-torch; never in CI). NETWORKs: some of mlp, lenet5, vgg16,
resnet18, mobilenetv2 (default: all).

Times one training step (forward, backward, Adam step; float weights, so a lower bound of
what a binary PMF recipe costs in PyTorch) of each network at the examples' batch on
random data, after warm-up steps, as the median of several steps. Prints one JSON object:
{"threads": T, "torch": "VERSION", "step_ms": {"mlp": ..., "lenet5": ..., "vgg16": ..., "resnet18": ...,
 "mobilenetv2": ...}}
"""
import json
import statistics
import sys
import time

import torch
import torch.nn as nn


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.BatchNorm1d(300), nn.ReLU(),
                         nn.Linear(300, 100), nn.BatchNorm1d(100), nn.ReLU(), nn.Linear(100, 10))


def lenet5():
    return nn.Sequential(nn.Conv2d(1, 20, 5), nn.BatchNorm2d(20, affine=False), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(20, 50, 5), nn.BatchNorm2d(50, affine=False), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(800, 500), nn.BatchNorm1d(500, affine=False), nn.ReLU(),
                         nn.Linear(500, 10), nn.BatchNorm1d(10, affine=False))


def vgg16():
    cfg = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    layers, c = [], 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.BatchNorm2d(v, affine=False), nn.ReLU()]
            c = v
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(512, 512), nn.BatchNorm1d(512, affine=False), nn.ReLU(),
                         nn.Linear(512, 512), nn.BatchNorm1d(512, affine=False), nn.ReLU(), nn.Linear(512, 10))


class Block(nn.Module):
    def __init__(self, cin, c, stride):
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(cin, c, 3, stride, 1), nn.BatchNorm2d(c, affine=False), nn.ReLU(),
                               nn.Conv2d(c, c, 3, 1, 1), nn.BatchNorm2d(c, affine=False))
        self.s = (nn.Sequential(nn.Conv2d(cin, c, 1, stride), nn.BatchNorm2d(c, affine=False))
                  if stride != 1 or cin != c else nn.Identity())

    def forward(self, x):
        return torch.relu(self.a(x) + self.s(x))


def resnet18():
    layers, c = [nn.Conv2d(3, 64, 3, padding=1), nn.BatchNorm2d(64, affine=False), nn.ReLU()], 64
    for out, stride in [(64, 1), (128, 2), (256, 2), (512, 2)]:
        layers += [Block(c, out, stride), Block(out, out, 1)]
        c = out
    return nn.Sequential(*layers, nn.AvgPool2d(4), nn.Flatten(), nn.Linear(512, 10))


class Inverted(nn.Module):
    """examples/cifar10_mobilenetv2_md.nnq's block: 1x1 expansion by t (none for t = 1), 3x3
    depthwise, linear 1x1 projection, each with batch norm; a residual where the shape is kept."""

    def __init__(self, cin, c, t, stride):
        super().__init__()
        e = cin * t
        self.e = (nn.Sequential(nn.Conv2d(cin, e, 1), nn.BatchNorm2d(e, affine=False), nn.ReLU())
                  if t != 1 else nn.Identity())
        self.d = nn.Sequential(nn.Conv2d(e, e, 3, stride, 1, groups=e), nn.BatchNorm2d(e, affine=False), nn.ReLU(),
                               nn.Conv2d(e, c, 1), nn.BatchNorm2d(c, affine=False))
        self.res = stride == 1 and cin == c

    def forward(self, x):
        y = self.d(self.e(x))
        return x + y if self.res else y


def mobilenetv2():
    layers, c = [nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32, affine=False), nn.ReLU()], 32
    for out, t, stride in [(16, 1, 1), (24, 6, 1), (24, 6, 1), (32, 6, 2), (32, 6, 1), (32, 6, 1),
                           (64, 6, 2), (64, 6, 1), (64, 6, 1), (64, 6, 1), (96, 6, 1), (96, 6, 1), (96, 6, 1),
                           (160, 6, 2), (160, 6, 1), (160, 6, 1), (320, 6, 1)]:
        layers.append(Inverted(c, out, t, stride))
        c = out
    return nn.Sequential(*layers, nn.Conv2d(c, 1280, 1), nn.BatchNorm2d(1280, affine=False), nn.ReLU(),
                         nn.AvgPool2d(4), nn.Flatten(), nn.Linear(1280, 10))


def step_ms(net, shape, batch, steps):
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    x, y = torch.randn(batch, *shape), torch.randint(0, 10, (batch,))
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for i in range(steps + 2):
        t = time.perf_counter()
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
        if i >= 2:
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads()
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    nets = {"mlp": (mlp, (1, 28, 28), 100, 50), "lenet5": (lenet5, (1, 28, 28), 100, 30),
            "vgg16": (vgg16, (3, 32, 32), 128, 3), "resnet18": (resnet18, (3, 32, 32), 128, 3),
            "mobilenetv2": (mobilenetv2, (3, 32, 32), 128, 3)}
    want = sys.argv[2:] or list(nets)
    out = {}
    for name in want:
        make, shape, batch, steps = nets[name]
        out[name] = step_ms(make(), shape, batch, steps)
    print(json.dumps({"threads": threads, "torch": torch.__version__, "step_ms": out}))


if __name__ == "__main__":
    main()
