"""The timed rows several benchmarks share: end-to-end inference of a model on noise images
(inference, scaling_size, scaling_batch, scaling_proposals) and its compiled training step on
synthetic batches (train_step, scaling_instances), each row with its FLOPs where known.
"""

import numpy as np
import tensorflow as tf

from benchmarks import flops as flop_count
from benchmarks import stages, synthetic, timing
from mrcnn_tf.modeling.optimizer import make_optimizer
from mrcnn_tf.training.precision import wrap_optimizer


def with_flops(row, flops, median_ms):
    """Adds gflop and achieved_gflops (`flops` / median latency) to a timed row."""
    row["gflop"] = round(flops / 1e9, 3)
    row["achieved_gflops"] = round(flops / 1e9 / (median_ms / 1000.0), 2) if median_ms else None
    return row


def inference_rows(model, spec, size, batches, inference=None, **labels):
    """End-to-end inference rows of `model` on [batch, size, size, 3] noise images, one per
    batch size, timing `inference` (default: a new `stages.make_inference_function` of
    `model`); `labels` are added to each row.

    Each row records the fewest and most detections per image over its runs; its FLOPs count
    the mask head on the most (the rows it runs on: `MaskRCNN.head_rows`), which is every
    slot at score threshold 0."""
    inference = inference or stages.make_inference_function(model, size)
    rows = []
    for batch in batches:
        images = tf.constant(synthetic.random_images(batch, size))
        detections = []

        def run():
            out = inference(images)
            detections.extend(int(n) for n in out["num_detections"].numpy())

        row = timing.timed_row(run, spec, size=size, batch=batch, **labels)
        row["images_per_s"] = round(batch / (row["median_ms"] / 1000.0), 3)
        row["min_detections"], row["max_detections"] = min(detections), max(detections)
        row["detections_per_image"] = model.config.detections_per_image
        counts = flop_count.inference_flops(model, size, size, batch,
                                            masks=max(row["max_detections"], 1))
        rows.append(with_flops(row, counts["total"], row["median_ms"]))
    return rows


def train_rows(policy, model, spec, size, batch_size, instance_counts, labels=None):
    """Training step rows (the project's SGD, compiled step) of `model` (computing under
    `policy`) at one size, one per instance count; `labels` are added to each row."""
    config = model.config
    model.compile(optimizer=wrap_optimizer(
        make_optimizer(config, batch_size=batch_size), policy))
    step = tf.function(model.train_step)
    rows = []
    for instances in instance_counts:
        batch = synthetic.training_batch(config, size, batch_size, instances)
        losses = []

        def run():
            losses.append(float(step(batch)["loss"].numpy()))

        row = timing.timed_row(run, spec, size=size, batch=batch_size, instances=instances,
                               **(labels or {}))
        row["images_per_s"] = round(batch_size / (row["median_ms"] / 1000.0), 3)
        row["last_loss"] = losses[-1]
        if not np.isfinite(losses).all():
            raise FloatingPointError(f"training loss is not finite at size {size}, "
                                     f"{instances} instances, {policy}: {losses}")
        rows.append(row)
    return rows
