"""The benchmarked model's config at one image size (imports no TensorFlow, so the suite's
parent process can check every size before it starts a benchmark process)."""

from mrcnn_tf.config import get_config


def model_config(spec, size, **changes):
    """The config for square `size` images: spec["model"]'s preset with its overrides, resized
    so the network runs at exactly `size` (no upscaling to 800), random weights, no scale
    jitter, score threshold 0 (all detections reach the mask head), plus `changes`.

    Raises ValueError (the config's own message) when a field does not fit `size`.
    """
    model = spec["model"]
    values = dict(model.get("overrides", {}))
    values.update(image_min_size=int(size), image_max_size=int(size), train_min_sizes=(),
                  backbone_weights=None, score_threshold=0.0)
    values.update(changes)
    return get_config(model["preset"], **values)
