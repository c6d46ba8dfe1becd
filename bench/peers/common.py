"""What every Python peer shares: arguments, the training images, timing and the JSON line format that
examples/kiln-bench.rs prints too (framework, device, workload, value, unit, median_ms, extras)."""
import argparse
import gzip
import json
import os
import statistics
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WORKLOADS = ["train-seed-cnn", "train-mlp", "infer-seed-cnn-1", "infer-seed-cnn-1000", "matmul-256",
             "matmul-1024", "conv2d-seed-fwd-bwd", "softmax-4096x1000", "sum-16m"]


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=50, help="training batches to time")
    parser.add_argument("workloads", nargs="*", default=WORKLOADS)
    return parser.parse_args()


def _idx(path, offset):
    with gzip.open(path) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


def training_images():
    """Fashion-MNIST's 60,000 training images as float32 [n, 1, 28, 28] in [0, 1] and int64 labels, or
    the 8,000 training digits of the MNIST sample shipped in the repository when it is not installed."""
    fashion = "/usr/share/datasets/fashion-mnist"
    if os.path.exists(os.path.join(fashion, "train-images-idx3-ubyte.gz")):
        x = _idx(os.path.join(fashion, "train-images-idx3-ubyte.gz"), 16)
        y = _idx(os.path.join(fashion, "train-labels-idx1-ubyte.gz"), 8)
        source = "fashion-mnist"
    else:
        sample = os.path.join(ROOT, "data", "mnist-sample")
        x = _idx(os.path.join(sample, "images-idx3-ubyte.gz"), 16)[: 8000 * 784]
        y = _idx(os.path.join(sample, "labels-idx1-ubyte.gz"), 8)[:8000]
        source = "mnist-sample"
    return (x.reshape(-1, 1, 28, 28) / 255.0).astype(np.float32), y.astype(np.int64), source


TEXT_VOCABULARY, TEXT_STEPS, TEXT_SAMPLES = 10000, 100, 4096


def text_data():
    """train-text-cnn's token ids (int64 [4096, 100], ids 1..9999) and 0/1 labels (float32 [4096, 1]):
    synthetic, since only the speed is measured; kiln-bench draws its own of the same shape."""
    rng = np.random.default_rng(0)
    ids = rng.integers(1, TEXT_VOCABULARY, size=(TEXT_SAMPLES, TEXT_STEPS), dtype=np.int64)
    labels = (ids[:, :1] % 2).astype(np.float32)
    return ids, labels


CREDIT_ROWS, CREDIT_FEATURES = 4454, 33
USERS, ITEMS, RATINGS = 943, 1682, 80000


def credit_data():
    """train-credit-mlp's rows (float32 [4454, 33]) and 0/1 labels (float32 [4454, 1]): synthetic, of the
    credit data's shape; kiln-bench draws its own."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(CREDIT_ROWS, CREDIT_FEATURES)).astype(np.float32)
    y = (rng.random((CREDIT_ROWS, 1)) < 0.28).astype(np.float32)
    return x, y


def rating_data():
    """train-recommender's user ids, item ids (int64 [80000]) and centred ratings (float32 [80000, 1])."""
    rng = np.random.default_rng(0)
    users = rng.integers(0, USERS, size=RATINGS)
    items = rng.integers(0, ITEMS, size=RATINGS)
    ratings = (rng.integers(0, 5, size=(RATINGS, 1)) - 2).astype(np.float32)
    return users, items, ratings


def median_seconds(fn, min_seconds=1.0, min_reps=5):
    """Median wall time of fn() after one warm-up call (fn must finish its work before returning)."""
    fn()
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def report(framework, device, workload, value, unit, seconds, **extra):
    line = {"framework": framework, "device": device, "workload": workload, "value": round(value, 4),
            "unit": unit, "median_ms": round(seconds * 1e3, 4)}
    line.update(extra)
    print(json.dumps(line), flush=True)


def report_kernel(framework, device, workload, seconds, result=None):
    """Reports the fixed-shape kernel workloads in their units (GFLOP/s or GB/s)."""
    if workload.startswith("matmul-"):
        n = int(workload.split("-")[1])
        report(framework, device, workload, 2 * n ** 3 / seconds / 1e9, "GFLOP/s", seconds)
    elif workload == "conv2d-seed-fwd-bwd":
        report(framework, device, workload, 2 * 2 * 64 * 32 * 26 * 26 * 9 / seconds / 1e9, "GFLOP/s", seconds)
    elif workload == "softmax-4096x1000":
        report(framework, device, workload, 4096 * 1000 * 8 / seconds / 1e9, "GB/s", seconds)
    elif workload == "sum-16m":
        report(framework, device, workload, 4 * (1 << 24) / seconds / 1e9, "GB/s", seconds, result=result)
    else:
        raise SystemExit(f"unknown workload {workload}")
