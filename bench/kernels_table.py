#!/usr/bin/env python3
"""Turns `cargo bench --bench kernels` output and `bench/peers/torch_kernels.py` JSON lines into the
markdown table of BENCHMARKS.md (kiln CPU, kiln GPU, PyTorch CPU, and the kiln-CPU / PyTorch ratio).

usage: bench/kernels_table.py KILN_CRITERION_LOG TORCH_JSONL [TORCH_JSONL ...]
Several PyTorch files (runs before and after kiln's) are combined by their median.
"""
import json
import re
import statistics
import sys

TO_GIGA = {"Gelem/s": 1.0, "Melem/s": 1e-3, "Kelem/s": 1e-6, "GiB/s": 1.073741824, "MiB/s": 1.048576e-3,
           "KiB/s": 1.024e-6}


def kiln_rates(path):
    rates, name = {}, None
    for line in open(path):
        if line and not line[0].isspace() and not line.startswith(("Benchmarking", "Found", "Warning")):
            token = line.split()[0] if line.split() else ""
            if token.count("/") >= 2:
                name = token
        if "thrpt:" in line and name:
            values = re.findall(r"([\d.]+) (\w+/s)", line)
            if len(values) == 3:
                value, unit = values[1]
                rates[name] = float(value) * TO_GIGA[unit]
            name = None
    return rates


def torch_rates(paths):
    runs = {}
    for path in paths:
        for line in open(path):
            if line.startswith("{"):
                row = json.loads(line)
                runs.setdefault(row["workload"], []).append(row["rate"])
    return {k: statistics.median(v) for k, v in runs.items()}


ROWS = [
    ("matmul 128²", "matmul/{}/square/128", "matmul/128", "GFLOP/s"),
    ("matmul 256²", "matmul/{}/square/256", "matmul/256", "GFLOP/s"),
    ("matmul 512²", "matmul/{}/square/512", "matmul/512", "GFLOP/s"),
    ("matmul 1024²", "matmul/{}/square/1024", "matmul/1024", "GFLOP/s"),
    ("matmul 2048²", "matmul/{}/square/2048", "matmul/2048", "GFLOP/s"),
    ("dense fwd 64×5408 · 5408×10", "matmul/{}/dense_forward/64x5408x10", "matmul/dense_forward_64x5408x10", "GFLOP/s"),
    ("dense dW 10×64 · 64×5408", "matmul/{}/dense_weight_grad/10x64x5408", "matmul/dense_weight_grad_10x64x5408", "GFLOP/s"),
]
for label, case in (("[64,1,28,28] × 32 3×3", "64x1x28x28_32x3x3"), ("[64,32,28,28] × 64 3×3 pad 1", "64x32x28x28_64x3x3_p1")):
    for kind in ("forward", "input_grad", "weight_grad"):
        ROWS.append((f"conv2d {kind} {label}", f"conv2d/{{}}/{kind}/{case}", f"conv2d/{kind}/{case}", "GFLOP/s"))
ROWS += [
    ("max_pool2d 2×2 [64,32,26,26]", "bandwidth/{}/max_pool2d/64x32x26x26_k2", "max_pool2d/64x32x26x26_k2", "GB/s"),
    ("softmax [4096,1000]", "bandwidth/{}/softmax/4096x1000", "softmax/4096x1000", "GB/s"),
    ("sum of 16M f32", "bandwidth/{}/sum/16M", "sum/16M", "GB/s"),
]


def fmt(value):
    return "—" if value is None else (f"{value:.2f}" if value < 10 else f"{value:.1f}")


def main():
    kiln = kiln_rates(sys.argv[1])
    torch = torch_rates(sys.argv[2:])
    print("| workload | unit | kiln CPU | kiln GPU (lavapipe) | PyTorch CPU | kiln CPU / PyTorch |")
    print("|---|---|---:|---:|---:|---:|")
    for label, kiln_key, torch_key, unit in ROWS:
        cpu, gpu, ref = kiln.get(kiln_key.format("cpu")), kiln.get(kiln_key.format("gpu")), torch.get(torch_key)
        ratio = f"{cpu / ref:.2f}×" if cpu and ref else "—"
        print(f"| {label} | {unit} | {fmt(cpu)} | {fmt(gpu)} | {fmt(ref)} | {ratio} |")


if __name__ == "__main__":
    main()
