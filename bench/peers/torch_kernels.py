#!/usr/bin/env python3
"""PyTorch (CPU) on the workloads of kiln's `cargo bench --bench kernels`, for side-by-side ratios.

Prints one JSON line per workload: {"peer": "pytorch", "workload": ..., "median_ms": ..., "rate": ..., "unit": ...}.
Install: pip install torch   (not part of kiln's build; CI never runs this)
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

from common import median_seconds  # noqa: E402

torch.set_num_threads(os.cpu_count())
torch.manual_seed(0)


def timed(fn):
    return median_seconds(fn, min_seconds=2.0)


def report(workload, seconds, amount, unit):
    print(json.dumps({"peer": "pytorch " + torch.__version__, "workload": workload,
                      "median_ms": round(seconds * 1e3, 4), "rate": round(amount / seconds / 1e9, 2), "unit": unit}),
          flush=True)


with torch.no_grad():
    for n in (128, 256, 512, 1024, 2048):
        a, b = torch.randn(n, n), torch.randn(n, n)
        report(f"matmul/{n}", timed(lambda: a @ b), 2 * n ** 3, "GFLOP/s")
    x, w = torch.randn(64, 5408), torch.randn(10, 5408)
    report("matmul/dense_forward_64x5408x10", timed(lambda: x @ w.t()), 2 * 64 * 5408 * 10, "GFLOP/s")
    dy = torch.randn(64, 10)
    report("matmul/dense_weight_grad_10x64x5408", timed(lambda: dy.t() @ x), 2 * 64 * 5408 * 10, "GFLOP/s")

for label, xs, ws, pad in (("64x1x28x28_32x3x3", (64, 1, 28, 28), (32, 1, 3, 3), 0),
                           ("64x32x28x28_64x3x3_p1", (64, 32, 28, 28), (64, 32, 3, 3), 1)):
    x = torch.randn(*xs, requires_grad=True)
    w = torch.randn(*ws, requires_grad=True)
    b = torch.randn(ws[0], requires_grad=True)
    y = torch.nn.functional.conv2d(x, w, b, padding=pad)
    dy = torch.randn_like(y)
    flops = 2 * y.numel() * ws[1] * ws[2] * ws[3]
    with torch.no_grad():
        report(f"conv2d/forward/{label}", timed(lambda: torch.nn.functional.conv2d(x, w, b, padding=pad)), flops, "GFLOP/s")
    report(f"conv2d/input_grad/{label}",
           timed(lambda: torch.nn.grad.conv2d_input(xs, w, dy, padding=pad)), flops, "GFLOP/s")
    report(f"conv2d/weight_grad/{label}",
           timed(lambda: torch.nn.grad.conv2d_weight(x, ws, dy, padding=pad)), flops, "GFLOP/s")

with torch.no_grad():
    x = torch.randn(64, 32, 26, 26)
    report("max_pool2d/64x32x26x26_k2", timed(lambda: torch.nn.functional.max_pool2d(x, 2, return_indices=True)),
           x.numel() * 4 * 5 / 4, "GB/s")
    logits = torch.randn(4096, 1000)
    report("softmax/4096x1000", timed(lambda: torch.softmax(logits, -1)), logits.numel() * 8, "GB/s")
    big = torch.randn(1 << 24)
    report("sum/16M", timed(lambda: big.sum()), big.numel() * 4, "GB/s")
