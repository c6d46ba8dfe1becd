#!/usr/bin/env python3
"""PyTorch on kiln-bench's workloads, one JSON line each (see common.py). CPU with one thread per core,
or CUDA when `--cuda` is given and available. Install: pip install torch numpy."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch  # noqa: E402

from common import (ITEMS, TEXT_VOCABULARY, USERS, credit_data, median_seconds, parse_args,  # noqa: E402
                    rating_data, report, report_kernel, text_data, training_images)

cuda = "--cuda" in sys.argv
if cuda:
    sys.argv.remove("--cuda")
args = parse_args()
torch.set_num_threads(os.cpu_count())
torch.manual_seed(0)
dev = torch.device("cuda" if cuda and torch.cuda.is_available() else "cpu")
framework = f"pytorch {torch.__version__}"
device_name = torch.cuda.get_device_name(0) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn):
    def run():
        fn()
        sync()
    return median_seconds(run)


def reference_cnn():
    return torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
                               torch.nn.Flatten(), torch.nn.Linear(5408, 10)).to(dev)


def train(model, x, y, batches, batch_size, optimizer):
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for i in range(batches):
        xb, yb = x[i * batch_size:(i + 1) * batch_size], y[i * batch_size:(i + 1) * batch_size]
        optimizer.zero_grad()
        loss_fn(model(xb), yb).backward()
        optimizer.step()
    sync()
    return batches * batch_size / (time.perf_counter() - start)


x_np, y_np, source = training_images()
for workload in args.workloads:
    if workload == "train-seed-cnn":
        x, y = torch.tensor(x_np, device=dev), torch.tensor(y_np, device=dev)
        start = time.perf_counter()
        model = reference_cnn()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
        train(model, x, y, 1, 64, optimizer)
        first = time.perf_counter() - start
        rate = train(model, x[64:], y[64:], min(args.batches, len(x) // 64 - 1), 64, optimizer)
        report(framework, device_name, workload, rate, "samples/s", 64 / rate, first_batch_s=round(first, 3),
               batches=args.batches, data=source)
    elif workload == "train-mlp":
        x, y = torch.tensor(x_np, device=dev), torch.tensor(y_np, device=dev)
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(),
                                    torch.nn.Linear(128, 10)).to(dev)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
        train(model, x, y, 10, 32, optimizer)
        rate = train(model, x, y, min(args.batches * 2, len(x) // 32), 32, optimizer)
        report(framework, device_name, workload, rate, "samples/s", 32 / rate)
    elif workload == "train-text-cnn":
        # Embedding(10000, 64) -> Conv1D(64, 5) + ReLU -> global max over 100 steps -> Dense(1), BCE.
        class TextCnn(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.embedding = torch.nn.Embedding(TEXT_VOCABULARY, 64)
                self.conv = torch.nn.Conv1d(64, 64, 5)
                self.dense = torch.nn.Linear(64, 1)

            def forward(self, ids):
                h = torch.relu(self.conv(self.embedding(ids).transpose(1, 2)))
                return self.dense(h.amax(dim=2))

        ids, labels = text_data()
        ids, labels = torch.tensor(ids, device=dev), torch.tensor(labels, device=dev)
        model = TextCnn().to(dev)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
        loss_fn = torch.nn.BCEWithLogitsLoss()

        def text_epoch(batches):
            start = time.perf_counter()
            for i in range(batches):
                xb, yb = ids[i * 32:(i + 1) * 32], labels[i * 32:(i + 1) * 32]
                optimizer.zero_grad()
                loss_fn(model(xb), yb).backward()
                optimizer.step()
            sync()
            return batches * 32 / (time.perf_counter() - start)

        text_epoch(5)
        rate = text_epoch(min(args.batches * 2, len(ids) // 32))
        report(framework, device_name, workload, rate, "samples/s", 32 / rate)
    elif workload in ("train-credit-mlp", "train-recommender"):
        if workload == "train-credit-mlp":
            x_np, y_np = credit_data()
            inputs, targets, batch = (torch.tensor(x_np, device=dev),), torch.tensor(y_np, device=dev), 64
            model = torch.nn.Sequential(torch.nn.Linear(33, 64), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                                        torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Dropout(0.3),
                                        torch.nn.Linear(32, 1)).to(dev)
            loss_fn, lr = torch.nn.BCEWithLogitsLoss(), 1e-3
        else:
            class Recommender(torch.nn.Module):
                def __init__(self):
                    super().__init__()
                    self.users, self.items = torch.nn.Embedding(USERS, 64), torch.nn.Embedding(ITEMS, 64)
                    self.user_bias, self.item_bias = torch.nn.Embedding(USERS, 1), torch.nn.Embedding(ITEMS, 1)

                def forward(self, u, i):
                    dot = (self.users(u) * self.items(i)).sum(1, keepdim=True)
                    return dot + self.user_bias(u) + self.item_bias(i)

            u_np, i_np, r_np = rating_data()
            inputs = (torch.tensor(u_np, device=dev), torch.tensor(i_np, device=dev))
            targets, batch, model = torch.tensor(r_np, device=dev), 256, Recommender().to(dev)
            loss_fn, lr = torch.nn.MSELoss(), 3e-3
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, eps=1e-7)
        samples = len(targets)

        def epoch_of(batches):
            start = time.perf_counter()
            for b in range(batches):
                lo = (b * batch) % samples
                part = [t[lo:lo + batch] for t in inputs]
                optimizer.zero_grad()
                loss_fn(model(*part), targets[lo:lo + batch]).backward()
                optimizer.step()
            sync()
            return batches * batch / (time.perf_counter() - start)

        epoch_of(5)
        rate = epoch_of(min(args.batches * 2, samples // batch))
        report(framework, device_name, workload, rate, "samples/s", batch / rate)
    elif workload.startswith("infer-seed-cnn-"):
        n = int(workload.rsplit("-", 1)[1])
        model, x = reference_cnn(), torch.rand(n, 1, 28, 28, device=dev)
        with torch.no_grad():
            seconds = timed(lambda: torch.softmax(model(x), -1))
            total = torch.softmax(model(x), -1).sum().item()
        report(framework, device_name, workload, n / seconds, "samples/s", seconds, result=total)
    elif workload == "conv2d-seed-fwd-bwd":
        x = torch.rand(64, 1, 28, 28, device=dev)
        w = torch.rand(32, 1, 3, 3, device=dev, requires_grad=True)
        b = torch.zeros(32, device=dev, requires_grad=True)
        dy = torch.rand(64, 32, 26, 26, device=dev)
        report_kernel(framework, device_name, workload,
                      timed(lambda: torch.nn.functional.conv2d(x, w, b).backward(dy)))
    else:
        with torch.no_grad():
            if workload.startswith("matmul-"):
                n = int(workload.split("-")[1])
                a, b = torch.rand(n, n, device=dev), torch.rand(n, n, device=dev)
                seconds = timed(lambda: a @ b)
            elif workload == "softmax-4096x1000":
                logits = torch.rand(4096, 1000, device=dev)
                seconds = timed(lambda: torch.softmax(logits, -1))
            elif workload == "sum-16m":
                big = torch.rand(1 << 24, device=dev)
                seconds = timed(lambda: big.sum())
                report_kernel(framework, device_name, workload, seconds, result=big.sum().item())
                continue
            else:
                raise SystemExit(f"unknown workload {workload}")
        report_kernel(framework, device_name, workload, seconds)
