#!/usr/bin/env python3
"""TensorFlow/Keras on kiln-bench's workloads, one JSON line each (see common.py). The training
workloads are the Keras tutorial verbatim (Sequential, compile with Adam and categorical
cross-entropy on one-hot labels, fit); the kernels run as tf.functions. Install: pip install
tensorflow-cpu numpy."""
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow import keras  # noqa: E402

from common import median_seconds, parse_args, report, report_kernel, training_images  # noqa: E402

args = parse_args()
tf.random.set_seed(0)
framework = f"tensorflow {tf.__version__}"
device_name = f"cpu ({os.cpu_count()} cores)"


def reference_cnn():
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        keras.layers.Conv2D(32, (3, 3), activation="relu"),
        keras.layers.MaxPooling2D((2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.001),
                  loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
    return model


def fit_rate(model, x, y, batches, batch_size):
    n = batches * batch_size
    start = time.perf_counter()
    model.fit(x[:n], y[:n], epochs=1, batch_size=batch_size, shuffle=False, verbose=0)
    return n / (time.perf_counter() - start)


x_np, y_np, source = training_images()
x_nhwc = x_np.transpose(0, 2, 3, 1)
y_onehot = keras.utils.to_categorical(y_np, 10)
for workload in args.workloads:
    if workload == "train-seed-cnn":
        start = time.perf_counter()
        model = reference_cnn()
        model.fit(x_nhwc[:64], y_onehot[:64], epochs=1, batch_size=64, verbose=0)
        first = time.perf_counter() - start
        rate = fit_rate(model, x_nhwc, y_onehot, min(args.batches, len(x_np) // 64), 64)
        report(framework, device_name, workload, rate, "samples/s", 64 / rate, first_batch_s=round(first, 3),
               batches=args.batches, data=source)
    elif workload == "train-mlp":
        model = keras.Sequential([keras.Input(shape=(28, 28, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(128, activation="relu"),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.001),
                      loss=keras.losses.CategoricalCrossentropy(), metrics=["accuracy"])
        fit_rate(model, x_nhwc, y_onehot, 10, 32)
        rate = fit_rate(model, x_nhwc, y_onehot, min(args.batches * 2, len(x_np) // 32), 32)
        report(framework, device_name, workload, rate, "samples/s", 32 / rate)
    elif workload.startswith("infer-seed-cnn-"):
        n = int(workload.rsplit("-", 1)[1])
        model = reference_cnn()
        x = np.random.rand(n, 28, 28, 1).astype(np.float32)
        seconds = median_seconds(lambda: model.predict_on_batch(x))
        report(framework, device_name, workload, n / seconds, "samples/s", seconds,
               result=float(np.sum(model.predict_on_batch(x))))
    else:
        if workload.startswith("matmul-"):
            n = int(workload.split("-")[1])
            a, b = tf.random.uniform((n, n)), tf.random.uniform((n, n))
            op = tf.function(lambda: tf.linalg.matmul(a, b))
        elif workload == "conv2d-seed-fwd-bwd":
            x = tf.random.uniform((64, 28, 28, 1))
            w = tf.Variable(tf.random.uniform((3, 3, 1, 32)))
            b = tf.Variable(tf.zeros(32))
            dy = tf.random.uniform((64, 26, 26, 32))

            @tf.function
            def op():
                with tf.GradientTape() as tape:
                    y = tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "VALID"), b)
                return tape.gradient(y, [w, b], output_gradients=dy)
        elif workload == "softmax-4096x1000":
            logits = tf.random.uniform((4096, 1000))
            op = tf.function(lambda: tf.nn.softmax(logits, -1))
        elif workload == "sum-16m":
            big = tf.random.uniform((1 << 24,))
            op = tf.function(lambda: tf.reduce_sum(big))
        else:
            raise SystemExit(f"unknown workload {workload}")
        seconds = median_seconds(lambda: tf.nest.map_structure(lambda t: t.numpy(), op()))
        report_kernel(framework, device_name, workload, seconds,
                      result=float(op().numpy()) if workload == "sum-16m" else None)
