"""This machine's compute ceilings: the GFLOP/s TensorFlow reaches on large, plain 3x3
convolutions and matmuls in float32 and in bfloat16, with the suite's thread settings.

A model's GFLOP/s means little alone: 200 GFLOP/s is near the top of a 2-core AVX-512 CPU
in float32 and a third of what its AMX units do in bfloat16. The suite measures the ceilings
in the same process setup as the model rows (benchmarks/worker.py pins the threads), and the
report states each row's share of its own precision's ceiling. No ceiling is typed by hand.

Each ceiling is the best median over the shapes the R50-FPN itself runs (its 3x3
convolutions, NHWC, 'same' padding, with bias and ReLU; the box head's matmuls), not a
synthetic best case: oneDNN's speed depends on the shape (blocking, cache), and on AMX some
other shapes run faster still, so this is the ceiling *for this model's work*. The rows
keep every shape's figure. On a shared virtual machine the figures move by 10-30% between
runs, which is why the suite measures them in the same run as the rows it compares.
"""

import tensorflow as tf

from benchmarks import timing

DTYPES = ("float32", "bfloat16")
# (batch, height, width, channels) of the R50-FPN's 3x3 convolutions, channels in = out: at
# 512 px, ResNet stages 2 to 5, the FPN output / RPN convolutions at strides 4 and 8, and the
# mask head (100 RoIs of 14x14); at 1024 px, stage 2 and the stride-4 FPN / RPN map; a batch
# of 4 at 512 px. AMX's bfloat16 rate grows with the map (the stride-4 map at 1024 px ran at
# about twice the rate of the stride-8 map at 512 px), so the large maps must be there.
CONV_SHAPES = ((1, 128, 128, 64), (1, 64, 64, 128), (1, 32, 32, 256), (1, 16, 16, 512),
               (1, 128, 128, 256), (1, 64, 64, 256), (100, 14, 14, 256),
               (1, 256, 256, 64), (1, 256, 256, 256), (4, 64, 64, 256))
# (m, k, n) of the box head's two fully connected layers over 1000 proposals.
MATMUL_SHAPES = ((1000, 12544, 1024), (1000, 1024, 1024))


def conv_flops(batch, height, width, channels, kernel=3):
    """FLOP of one 'same' convolution, channels in = out (1 multiply-add = 2 FLOP)."""
    return 2 * batch * height * width * channels * channels * kernel * kernel


def _conv_call(shape, dtype):
    """conv + bias + ReLU on variables, as the model's Keras layers run (one fused oneDNN
    op). One element comes back: fetching the whole output would time a copy too."""
    batch, height, width, channels = shape
    x = tf.Variable(tf.cast(tf.random.stateless_normal(shape, [0, 1]), dtype))
    w = tf.Variable(tf.cast(tf.random.stateless_normal([3, 3, channels, channels], [0, 2])
                            * 0.05, dtype))
    b = tf.Variable(tf.zeros([channels], dtype))
    fn = tf.function(lambda: tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(x, w, 1, "SAME"), b))[
        0, 0, 0, 0])
    return lambda: fn().numpy()


def _matmul_call(shape, dtype):
    m, k, n = shape
    a = tf.Variable(tf.cast(tf.random.stateless_normal([m, k], [0, 3]), dtype))
    b = tf.Variable(tf.cast(tf.random.stateless_normal([k, n], [0, 4]) * 0.05, dtype))
    fn = tf.function(lambda: tf.linalg.matmul(a, b)[0, 0])
    return lambda: fn().numpy()


def measure(warmup=3, repeats=10, conv_shapes=CONV_SHAPES, matmul_shapes=MATMUL_SHAPES):
    """{"rows": one per (kind, dtype, shape) with median_ms and gflop_per_s (of the median),
    "ceilings": {dtype: {"conv3x3": best GFLOP/s, "matmul": best GFLOP/s}}}."""
    rows = []
    for dtype in DTYPES:
        for shape in conv_shapes:
            rows.append(_row("conv3x3", dtype, "x".join(map(str, shape)), conv_flops(*shape),
                             _conv_call(shape, dtype), warmup, repeats))
        for shape in matmul_shapes:
            rows.append(_row("matmul", dtype, "x".join(map(str, shape)),
                             2 * shape[0] * shape[1] * shape[2], _matmul_call(shape, dtype),
                             warmup, repeats))
    ceilings = {}
    for row in rows:
        best = ceilings.setdefault(row["dtype"], {})
        best[row["kind"]] = max(best.get(row["kind"], 0.0), row["gflop_per_s"])
    return {"rows": rows, "ceilings": ceilings}


def _row(kind, dtype, shape, flops, call, warmup, repeats):
    row = timing.timed_row(call, {"warmup": warmup, "repeats": repeats}, kind=kind,
                           dtype=dtype, shape=shape, gflop=round(flops / 1e9, 3))
    row["gflop_per_s"] = round(flops / 1e9 / (row["median_ms"] / 1000.0), 1)
    return row
