"""Benchmark `inference`: latency of model(images) + mask paste at each size, batch size and
Keras dtype policy of spec["precisions"], and how the detections of each mixed precision agree
with float32's (benchmarks/agreement.py) on the largest timed batch's images, with the same
weights.

Each (size, policy) is timed twice: at score threshold 0, where all D detection slots reach
the mask head (the worst case), and at a threshold that leaves about spec["few_detections"]
per image, as a trained model's default threshold does on a typical photo (5 to 20), where
the mask head is a small share."""

import numpy as np
import tensorflow as tf

from benchmarks import agreement, stages, synthetic
from benchmarks.configs import model_config
from benchmarks.models import per_policy, policies, precision_labels
from benchmarks.timed_rows import inference_rows


def run(spec):
    """{"rows": timed rows, "agreement": one row per (size, mixed policy), "what"}."""
    rows, agreement_rows = [], []
    for size in spec["sizes"]:
        size_rows, size_agreement = _inference_at_size(spec, size)
        rows += size_rows
        agreement_rows += size_agreement
    return {"rows": rows, "agreement": agreement_rows,
            "what": "model(images) + full-image mask paste, one tf.function"}


def _inference_at_size(spec, size):
    """The benchmark at one image size: (timed rows, agreement rows)."""
    images = tf.constant(synthetic.random_images(max(spec["batches"]), size))
    rows, agreement_rows, reference = [], [], {}

    def measure(policy, model):
        inference = stages.make_inference_function(model, size)
        labels = precision_labels(policy)
        rows.extend(inference_rows(model, spec, size, spec["batches"], inference,
                                   score_threshold=0.0, **labels))
        if spec.get("few_detections"):
            rows.extend(_few_detection_rows(model, spec, size, inference,
                                            spec["few_detections"], labels))
        if policy == "float32":  # per_policy runs float32 first
            reference.update(_reference_detections(inference, images))
        elif reference:
            agreement_rows.append(_agreement_row(model, inference, reference, images,
                                                 **labels))

    per_policy(model_config(spec, size), policies(spec, "inference"), measure, folded=True)
    return rows, agreement_rows


def _few_detection_rows(model, spec, size, inference, count, labels):
    """Inference rows with the detector's score threshold raised so that the image with the
    most detections keeps `count`: midway between its count-th and (count+1)-th best score
    at threshold 0 (`inference`), chosen per batch on the images that batch's row times. The
    heads and the paste run on the batch's most detections (`MaskRCNN.head_rows`), so each
    row costs what `count` detections per image cost. Random weights score every class
    about alike, so a default threshold such as 0.5 would keep none: the threshold is chosen
    for the count instead. The rows record their threshold and detections per image."""
    detector = model.detector
    default = detector.score_threshold
    rows = []
    try:
        for batch in spec["batches"]:
            images = tf.constant(synthetic.random_images(batch, size))  # as inference_rows
            scores = -np.sort(-inference(images)["scores"].numpy(), axis=1)
            threshold = float(np.max((scores[:, count - 1] + scores[:, count]) / 2))
            detector.score_threshold = threshold  # read when traced: a new function below
            rows += inference_rows(model, spec, size, [batch],
                                   stages.make_inference_function(model, size),
                                   score_threshold=round(threshold, 6), **labels)
    finally:
        detector.score_threshold = default
    return rows


def _as_numpy(outputs):
    """A dict of tensors as a dict of NumPy arrays."""
    return {key: value.numpy() for key, value in outputs.items()}


def _reference_detections(inference, images):
    """float32's detections on `images` ([B, S, S, 3]) as NumPy, kept while the other
    precisions are timed: masks [B, D, S, S] bool are packed 8 pixels a byte along the width
    (4 images x 100 masks at 1024 px: 420 MB as bool, 52 MB packed)."""
    reference = _as_numpy(inference(images))
    reference["masks"] = np.packbits(reference["masks"], axis=-1)
    return reference


def _agreement_row(model, inference, reference, images, **labels):
    """`benchmarks.agreement.batch_agreement` of `model` (a mixed policy, float32's weights)
    against float32's `_reference_detections` on the same `images`, with `labels`."""
    reference = dict(reference, masks=np.unpackbits(
        reference["masks"], axis=-1, count=int(images.shape[2])).astype(bool))
    # Only backbone_fpn and mask_paste are called, so only those two are traced.
    same_box = stages.masks_on_boxes(stages.make_stage_functions(model, images.shape[1]),
                                     images, reference)
    row = {"size": int(images.shape[1]), "images": int(images.shape[0]), **labels}
    row.update(agreement.batch_agreement(reference, _as_numpy(inference(images)),
                                         same_box.numpy()))
    return row
