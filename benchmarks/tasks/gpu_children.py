"""The children of the gpu task, each run in a process of its own (`python -m benchmarks gpu
--child KIND SPEC.json RESULT.json`), since op determinism and the Keras dtype policy are
process-wide: a training run through `training.trainer.train`, inference latency under one
policy, and the exported SavedModel's serving_default. Each takes the spec the parent wrote
and returns the JSON-ready result.
"""

import json
import os
import time

from benchmarks import timing


def _config(settings):
    from mrcnn_tf.config import get_config  # noqa: PLC0415
    return get_config(settings["preset"], score_threshold=0.0, **settings["overrides"])


def _synthetic_source(config, size, count=64):
    from mrcnn_tf.data.synthetic import synthetic_set_for  # noqa: PLC0415
    from mrcnn_tf.training.input import IndexedSource  # noqa: PLC0415
    images = synthetic_set_for(config)
    return IndexedSource(count, lambda i: images.generate(i, 0, size), "synthetic", 0), images


def train(spec):
    """Trains `steps` steps of one variant; returns losses, images/s after warm-up, plan."""
    import keras  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    from mrcnn_tf.labels import LabelMap  # noqa: PLC0415
    from mrcnn_tf.training import trainer  # noqa: PLC0415
    settings, variant = spec["settings"], spec["variant"]
    config = _config(settings)
    source, images = _synthetic_source(config, settings["image_size"])
    replicas = max(1, len(tf.config.list_physical_devices("GPU"))) \
        if variant.get("strategy") == "mirrored" else 1
    batch = spec["batch_per_gpu"] * replicas
    ends = []

    class StepTimes(keras.callbacks.Callback):
        def on_train_batch_end(self, batch_index, logs=None):
            ends.append(time.perf_counter())

    options = trainer.TrainOptions(run_dir=spec["run_dir"], epochs=1,
                                   steps_per_epoch=spec["steps"], batch_size=batch,
                                   tensorboard_images=0, verbose=0, **variant)
    summary = trainer.train(config, source, LabelMap.from_names(images.class_names), options,
                            callbacks=[StepTimes()])
    warm = min(5, len(ends) - 2)  # the first steps trace, compile and autotune
    seconds = (ends[-1] - ends[warm]) / max(1, len(ends) - 1 - warm)
    with open(os.path.join(spec["run_dir"], "run.json")) as f:
        plan = json.load(f)["device_plan"]
    losses = summary["history"]["loss"]
    return {"variant": spec["name"], "replicas": replicas, "global_batch": batch,
            "steps": len(ends), "loss": losses[-1], "finite": bool(np.all(np.isfinite(losses))),
            "step_s": round(seconds, 4), "images_per_s": round(batch / seconds, 2),
            "images_per_s_per_gpu": round(batch / seconds / replicas, 2),
            "peak_gpu_mb": _peak_gpu_mb(), "device_plan": plan}


def _peak_gpu_mb():
    import tensorflow as tf  # noqa: PLC0415
    if not tf.config.list_physical_devices("GPU"):
        return None
    return round(tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 20, 1)


def _reset_gpu_peak():
    import tensorflow as tf  # noqa: PLC0415
    if tf.config.list_physical_devices("GPU"):
        tf.config.experimental.reset_memory_stats("GPU:0")


def inference(spec):
    """Latency of model(images) at the inference size for each batch under one policy."""
    import numpy as np  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    from mrcnn_tf.modeling.mask_rcnn import MaskRCNN  # noqa: PLC0415
    from mrcnn_tf.training import precision  # noqa: PLC0415
    settings = spec["settings"]
    precision.set_precision(spec["policy"])
    model = MaskRCNN(_config(settings))
    model.build()
    run = tf.function(lambda x: model(x)["num_detections"])
    rows = []
    height, width = settings["inference_hw"]
    for batch in settings["inference_batches"]:
        images = tf.constant(np.random.default_rng(0).integers(
            0, 256, (batch, height, width, 3), dtype=np.uint8))
        _reset_gpu_peak()
        stats = timing.time_calls(lambda: run(images).numpy(), settings["warmup"],
                                  settings["repeats"])
        rows.append({"policy": spec["policy"], "batch": batch, "size": f"{height}x{width}",
                     "median_ms": stats["median_ms"], "p90_ms": stats["p90_ms"],
                     "ms_per_image": round(stats["median_ms"] / batch, 2),
                     "peak_gpu_mb": _peak_gpu_mb()})
    return {"rows": rows}


def savedmodel(spec):
    """Exports the float32 model and times the loaded serving_default signature, batch 1."""
    import numpy as np  # noqa: PLC0415
    import tensorflow as tf  # noqa: PLC0415

    from mrcnn_tf.export.saved_model import export_saved_model  # noqa: PLC0415
    from mrcnn_tf.modeling.mask_rcnn import MaskRCNN  # noqa: PLC0415
    settings = spec["settings"]
    model = MaskRCNN(_config(settings))
    path = export_saved_model(model, os.path.join(spec["workdir"], "saved_model"))
    serve = tf.saved_model.load(path).signatures["serving_default"]
    height, width = settings["inference_hw"]
    images = tf.constant(np.random.default_rng(0).integers(0, 256, (1, height, width, 3),
                                                           dtype=np.uint8))
    stats = timing.time_calls(lambda: serve(image_tensor=images)["num_detections"].numpy(),
                              settings["warmup"], settings["repeats"])
    return {"size": f"{height}x{width}", "batch": 1, "median_ms": stats["median_ms"],
            "p90_ms": stats["p90_ms"]}


# KIND of `--child KIND` -> the child that runs it.
CHILDREN = {"train": train, "inference": inference, "savedmodel": savedmodel}
