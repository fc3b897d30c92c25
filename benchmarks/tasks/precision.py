"""Mixed precision and XLA: step times of the same model in float32, mixed_bfloat16 and XLA.

    python -m benchmarks precision small   # shapes_tiny, 128 px, batch 2: train step, predict
    python -m benchmarks precision r50     # coco_r50_fpn (random init), 512x512, batch 1: predict

Variants (built in one process, timed interleaved round by round so load changes hit all):
float32 with each RoIAlign, float32 + XLA (jit_compile, gather RoIAlign), mixed_bfloat16, and
mixed_bfloat16 + XLA. Prints the median and minimum per variant and the load average.
Threads are pinned to 2, the CPU machines' core count.
"""

import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from mrcnn_tf.config import get_config  # noqa: E402
from mrcnn_tf.data import pipeline, shapes  # noqa: E402
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN  # noqa: E402
from mrcnn_tf.training import precision  # noqa: E402

VARIANTS = (("float32", False, "crop_and_resize"), ("float32", False, "builtin"),
            ("float32", True, "builtin"), ("mixed_bfloat16", False, "crop_and_resize"),
            ("mixed_bfloat16", True, "builtin"))


def add_arguments(parser):
    parser.add_argument("which", choices=("small", "r50"))
    parser.add_argument("--rounds", type=int, default=5)


def main(args):
    """Times the variants and prints one line each; exit status 0."""
    for name, times in run(args.which, args.rounds):
        line = f"{name:48s}"
        for kind, seconds in times.items():
            values = 1000 * np.asarray(seconds)
            line += f" {kind} {np.median(values):7.0f} ms (min {values.min():.0f})"
        print(line)
    return 0


def build(base, policy, jit, roi_align):
    """A model of `base` built under `policy`, compiled with or without XLA."""
    precision.set_precision(policy)
    keras.utils.set_random_seed(0)
    # The builtin (gather-only) RoIAlign is the static shape policy's.
    model = MaskRCNN(base.replace(static_shapes=roi_align == "builtin"))
    model.build()
    precision.set_precision("float32")
    optimizer = precision.wrap_optimizer(keras.optimizers.SGD(0.01, momentum=0.9), policy)
    model.compile(optimizer=optimizer, jit_compile=jit)
    return model


def timed(fn, repeats):
    start = time.perf_counter()
    for i in range(repeats):
        fn(i)
    return (time.perf_counter() - start) / repeats


def run(which, rounds):
    """Builds every variant of model `which` ("small" or "r50", printing each one's first
    call), then times them `rounds` rounds, interleaved; prints the load average.

    Returns: [(variant name, {"train": [s per step, one per round], "predict": [...]})], train
    only for "small".
    """
    tf.config.threading.set_inter_op_parallelism_threads(2)
    tf.config.threading.set_intra_op_parallelism_threads(2)
    train = which == "small"
    if train:
        size, batch, repeats = 128, 2, 5
        base = get_config("shapes_tiny")
        raw = shapes.shapes_dataset(8, seed=3, image_size=size)
        data = list(pipeline.make_training_dataset(raw, base, batch, shuffle=False,
                                                   augment=False, seed=3, repeat=False))
    else:
        size, batch, repeats = 512, 1, 1
        base = get_config("coco_r50_fpn", backbone_weights=None, image_min_size=size,
                          image_max_size=size, train_min_sizes=())
    images = np.random.default_rng(0).integers(0, 255, (batch, size, size, 3), np.uint8)

    runs = []
    for policy, jit, roi_align in VARIANTS:
        model = build(base, policy, jit, roi_align)
        name = f"{policy}{' + XLA' if jit else ''} ({roi_align} RoIAlign)"
        first = timed(lambda _: model.predict_on_batch(images), 1)
        if train:
            first_train = timed(lambda _: model.train_on_batch(data[0]), 1)
            print(f"built {name}: first predict {first:.1f} s, first train step "
                  f"{first_train:.1f} s", flush=True)
        else:
            print(f"built {name}: first predict {first:.1f} s", flush=True)
        runs.append((name, model, {"train": [], "predict": []} if train else {"predict": []}))

    for r in range(rounds):
        for name, model, times in runs:
            if train:
                times["train"].append(timed(
                    lambda i: model.train_on_batch(data[(i + r) % len(data)]), repeats))
            times["predict"].append(timed(lambda _: model.predict_on_batch(images), repeats))
    print(f"load average {os.getloadavg()}")
    return [(name, times) for name, _, times in runs]
