"""Runs a model over a dataset and scores it with pycocotools; a Keras callback doing so every
N epochs, logging the APs to the training logs and TensorBoard.

Memory holds one example at a time, whatever the number of images: the ground truth and the
predictions are encoded (masks as RLE) as they come and only the encodings are kept, never a
list of examples or of full-image masks. Building the ground truth from the examples therefore
reads them twice (ground truth, then predictions), so they must be re-iterable. What still
grows with the images is small: the encodings and COCOeval's per-image match tables
(`python -m benchmarks coco_scale --part evaluate` measures it).
"""

import collections.abc
import os
import time

import keras
import tensorflow as tf
from absl import logging

from mrcnn_tf import failpoints, visualize
from mrcnn_tf.evaluation import coco_eval, plots
from mrcnn_tf.io_utils import write_json_atomic
from mrcnn_tf.modeling.branches import branches

# The numbers a training log keeps of each evaluation (the 12-number summary stays in stdout).
LOGGED_STATS = ("AP", "AP50", "AP75")


def predict_examples(model, examples):
    """Yields (example, prediction) for each example, one image at a time.

    Args:
      model: a MaskRCNN.
      examples: iterable of example dicts with at least "image" uint8 [H, W, 3] and "image_id".
    Yields:
      the example and `model.predict_images([image])[0]` (boxes, class_ids, scores, full-image
      masks). One image at a time keeps memory bounded by a single image's masks.
    """
    for example in examples:
        yield example, model.predict_images([example["image"]])[0]


def default_iou_types(config):
    """What a model of `config` is scored on: "bbox", then each branch's iou type ("segm" for
    the mask branch, "keypoints" for the keypoint branch); None (no config) gives the box and
    mask evaluation of a plain Mask R-CNN."""
    if config is None:
        return ("bbox", "segm")
    return ("bbox",) + tuple(branch.iou_type for branch in branches(config))


def best_metric(config):
    """The epoch-log metric that picks a run's best checkpoint: the first branch's AP (mask AP
    "segm_AP" when the model has masks, else "keypoints_AP"), else box AP."""
    iou_types = default_iou_types(config)
    return (iou_types[1] if len(iou_types) > 1 else iou_types[0]) + "_AP"


def build_ground_truth(model, examples, label_map):
    """pycocotools COCO ground truth of `examples` (an iterable, read once: each example's
    masks [N, H, W] are RLE-encoded as it comes and only the encoded annotations are kept; see
    `coco_eval.coco_ground_truth_dict`), its categories naming the keypoints and skeleton of
    the model's config when the examples carry keypoints."""
    config = getattr(model, "config", None)
    if config is not None and config.num_keypoints > 0:
        return coco_eval.build_coco_ground_truth(examples, label_map, config.keypoint_names,
                                                 config.keypoint_skeleton)
    return coco_eval.build_coco_ground_truth(examples, label_map)


def require_reiterable(examples, why):
    """Raises ValueError when `examples` is a one-shot iterator (a generator, `iter(list)`, a
    tf.data iterator) rather than something that starts afresh each time it is iterated.

    Listing it instead would hold every example, full-image masks included, at once.

    Args:
      examples: what the caller was given.
      why: why it is read more than once, for the message.
    """
    if isinstance(examples, collections.abc.Iterator):
        raise ValueError(
            f"examples: got a one-shot iterator ({type(examples).__name__}), which can be read "
            f"only once, but {why}; expected a sequence or a dataset that can be iterated "
            "twice (a list, a CocoDataset, a tf.data.Dataset, an object whose __iter__ "
            "starts afresh)")


def _has_keypoint_ground_truth(coco_gt):
    """Whether some category of `coco_gt` lists keypoint names (so OKS can be computed)."""
    return any(c.get("keypoints") for c in coco_gt.cats.values())


def evaluate_model(model, examples, label_map, coco_gt=None, iou_types=None,
                   print_summary=True, results_path=None, on_prediction=None, oks_sigmas=None,
                   on_evaluated=None):
    """COCO metrics of `model` on `examples`.

    Args:
      model: a MaskRCNN (or any object with `predict_images`; `config` is optional).
      examples: iterable of example dicts (a `CocoDataset`, a list of shapes examples, ...).
      label_map: `coco_eval.LabelMap` of the model's classes.
      coco_gt: the ground truth as a pycocotools COCO (e.g. a COCO annotations file, whose
        keypoints are already in COCO's convention); None builds it from `examples` in a
        first pass over them, before the predictions' pass. They must then be re-iterable
        (a one-shot iterator raises ValueError), yield the same examples each time, and carry
        boxes, class_ids, masks, is_crowd and, for a keypoint model, keypoints.
      iou_types: the COCOeval types to run; None: `default_iou_types(model.config)`, leaving
        out "keypoints" (with a warning) when the ground truth has no keypoints.
      results_path: also write the COCO results JSON there (atomically).
      on_prediction: optional callable(example, prediction) seeing each image's prediction
        (e.g. to draw some) without running the model a second time.
      oks_sigmas: K per-keypoint OKS sigmas; None: `model.config.oks_sigmas` (COCO's for
        COCO's person keypoints).
      on_evaluated: optional callable(iou_type, coco_eval) seeing each type's accumulated
        COCOeval (see `coco_eval.evaluate_coco`), e.g. `plots.PlotCollector.on_evaluated`.
    Returns:
      the flat metrics dict of `coco_eval.evaluate_coco` over the images run (e.g.
      "bbox/AP", "segm/AP", "keypoints/AP"), plus "num_images".

    Memory: one example and one prediction at a time; what grows with the number of images
    is only their COCO encodings (RLE masks, boxes, keypoints) and COCOeval's tables.
    """
    config = getattr(model, "config", None)
    if coco_gt is None:
        require_reiterable(examples, "with coco_gt=None the ground truth is built in a first "
                                     "pass over them and the predictions in a second")
        coco_gt = build_ground_truth(model, examples, label_map)
    if iou_types is None:
        iou_types = default_iou_types(config)
        if "keypoints" in iou_types and not _has_keypoint_ground_truth(coco_gt):
            logging.warning("the model predicts keypoints but the ground truth has none; "
                            "keypoint AP is not computed")
            iou_types = tuple(t for t in iou_types if t != "keypoints")
    if "keypoints" in iou_types and oks_sigmas is None and config is not None:
        oks_sigmas = config.oks_sigmas
    results = []
    image_ids = []
    for example, prediction in predict_examples(model, examples):
        if on_prediction is not None:
            on_prediction(example, prediction)
        results.extend(coco_eval.predictions_to_coco_results(
            int(example["image_id"]), prediction, label_map))
        image_ids.append(int(example["image_id"]))
    if results_path:
        write_json_atomic(results_path, results)
    # Only the images actually run count: a dataset may have skipped unreadable ones.
    metrics = coco_eval.evaluate_coco(coco_gt, results, iou_types, print_summary=print_summary,
                                      image_ids=image_ids, oks_sigmas=oks_sigmas,
                                      on_evaluated=on_evaluated)
    metrics["num_images"] = len(image_ids)
    return metrics


class COCOEvalCallback(keras.callbacks.Callback):
    """Evaluates with pycocotools every `every_n_epochs` epochs.

    Adds "<type>_AP", "<type>_AP50", "<type>_AP75" (type bbox, segm or keypoints) to the epoch
    logs, so they show in the History, CSV logs and checkpoint callbacks that monitor them (e.g.
    ModelCheckpoint(monitor="segm_AP", mode="max"); `best_metric(config)` names the one a run
    keeps its best model by); with `log_dir`, also writes them as TensorBoard scalars under
    "eval/", with the predicted masks, boxes and poses drawn on the first `image_summaries`
    evaluation images and, with `plots`, the precision-recall curves at IoU 0.5 and 0.75 of
    each type ("plots/pr_<type>_iou50", "..._iou75") and TIDE's error breakdown
    ("plots/errors") as images (see `plots.summary_images`).

    Args:
      examples: a re-iterable of example dicts (list, CocoDataset) to evaluate on, read anew
        at each evaluation (a one-shot iterator raises ValueError).
      label_map: the model's `coco_eval.LabelMap`.
      coco_gt: optional pycocotools COCO ground truth (built from `examples` when None).
      every_n_epochs: evaluation period.
      log_dir: optional TensorBoard folder.
      iou_types: the COCOeval types; None: what the model's config predicts (see
        `evaluate_model`), decided at the first evaluation, once the model is known.
      image_summaries: images with predictions drawn written to TensorBoard at each
        evaluation (needs log_dir).
      score_threshold: detections drawn on those images.
      plots: write the plot images at each evaluation (needs log_dir). On the demo's 200
        held-out images they add 0.4 s (breakdown and drawing) to a 12-19 s evaluation on 2
        CPU cores; the breakdown costs about 16 us per detection and type (1.6 s for 500
        images x 100 detections, boxes and masks). `plot_seconds` has the last one's.
    """

    def __init__(self, examples, label_map, coco_gt=None, every_n_epochs=1, log_dir=None,
                 iou_types=None, image_summaries=4, score_threshold=0.5, plots=True):
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"COCOEvalCallback every_n_epochs={every_n_epochs}: expected >= 1")
        require_reiterable(examples, "COCOEvalCallback evaluates on them every "
                                     f"{every_n_epochs} epoch(s)")
        self.examples = examples
        self.label_map = label_map
        self.coco_gt = coco_gt
        self.every_n_epochs = int(every_n_epochs)
        self.iou_types = None if iou_types is None else tuple(iou_types)
        self.writer = (tf.summary.create_file_writer(os.path.join(log_dir, "eval"))
                       if log_dir else None)
        self.history = []
        self.image_summaries = int(image_summaries)
        self.score_threshold = float(score_threshold)
        self.plots = bool(plots)
        self.plot_seconds = None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        if self.coco_gt is None:
            # Built once, in a pass of its own, and kept (encoded) for the later evaluations.
            self.coco_gt = build_ground_truth(self.model, self.examples, self.label_map)
        drawn = []
        config = getattr(self.model, "config", None)
        skeleton = config.keypoint_skeleton if config is not None else ()

        def draw(example, prediction):
            # A model without a mask head returns no "masks"; one without keypoints none.
            if self.writer is not None and len(drawn) < self.image_summaries:
                drawn.append(visualize.draw_instances(
                    example["image"], prediction["boxes"], prediction["class_ids"],
                    prediction["scores"], prediction.get("masks"), list(self.label_map.names),
                    score_threshold=self.score_threshold,
                    keypoints=prediction.get("keypoints"), skeleton=skeleton))

        # The plots keep no worst images here: those need the examples read again.
        collector = (plots.PlotCollector(self.score_threshold, worst=0)
                     if self.writer is not None and self.plots else None)
        metrics = evaluate_model(self.model, self.examples, self.label_map, self.coco_gt,
                                 self.iou_types, print_summary=False, on_prediction=draw,
                                 on_evaluated=collector and collector.on_evaluated)
        failpoints.reached("evaluation")
        # The types evaluate_model ran (a default may drop keypoints the ground truth lacks).
        evaluated = [t for t in coco_eval.SUPPORTED_IOU_TYPES if f"{t}/AP" in metrics]
        values = {f"{t}_{s}": metrics[f"{t}/{s}"] for t in evaluated for s in LOGGED_STATS}
        self.history.append({"epoch": epoch + 1, **values})
        logging.info("epoch %d COCO evaluation: %s", epoch + 1,
                     ", ".join(f"{k} {v:.4f}" for k, v in values.items()))
        if logs is not None:
            logs.update(values)
        if self.writer is not None:
            with self.writer.as_default():
                for name, value in values.items():
                    tf.summary.scalar(name, value, step=epoch + 1)
                for i, image in enumerate(drawn):
                    tf.summary.image(f"predictions/{i}", image[None], step=epoch + 1)
                if collector is not None:
                    start = time.perf_counter()
                    for name, image in plots.summary_images(collector).items():
                        tf.summary.image(f"plots/{name}", image[None], step=epoch + 1)
                    self.plot_seconds = collector.seconds + time.perf_counter() - start
            self.writer.flush()
