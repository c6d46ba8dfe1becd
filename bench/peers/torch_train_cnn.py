#!/usr/bin/env python3
"""PyTorch (CPU) training the reference CNN on Fashion-MNIST for one epoch, batch 64, Adam 1e-3 (eps 1e-7),
inputs /255 — the workload of `cargo run --release --example mnist -- --dataset fashion --epochs 1`.
Prints samples/s and the test accuracy. Install: pip install torch numpy; apt-get install dataset-fashion-mnist.
"""
import gzip
import os
import time

import numpy as np
import torch

torch.set_num_threads(os.cpu_count())
torch.manual_seed(0)
root = "/usr/share/datasets/fashion-mnist"


def idx(name, offset):
    with gzip.open(os.path.join(root, name)) as f:
        return np.frombuffer(f.read(), np.uint8, offset=offset)


x_train = torch.tensor(idx("train-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28) / 255.0, dtype=torch.float32)
y_train = torch.tensor(idx("train-labels-idx1-ubyte.gz", 8).astype(np.int64))
x_test = torch.tensor(idx("t10k-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28) / 255.0, dtype=torch.float32)
y_test = torch.tensor(idx("t10k-labels-idx1-ubyte.gz", 8).astype(np.int64))

model = torch.nn.Sequential(torch.nn.Conv2d(1, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                            torch.nn.Linear(5408, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
loss_fn = torch.nn.CrossEntropyLoss()
start = time.perf_counter()
order = torch.randperm(len(x_train))
for i in range(0, len(x_train), 64):
    batch = order[i:i + 64]
    optimizer.zero_grad()
    loss = loss_fn(model(x_train[batch]), y_train[batch])
    loss.backward()
    optimizer.step()
seconds = time.perf_counter() - start
with torch.no_grad():
    accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
print(f"pytorch {torch.__version__}: {len(x_train) / seconds:.0f} samples/s ({seconds:.1f} s/epoch), test accuracy {accuracy:.4f}")
