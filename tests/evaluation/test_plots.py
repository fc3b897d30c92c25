"""The evaluation pictures (mrcnn_tf/evaluation/plots.py, worst_images.py): PR curves equal to
COCOeval's precision table, the breakdown's AP50 equal to COCOeval's, the files and their
sizes, and the training callback's TensorBoard images."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf
from pycocotools.cocoeval import COCOeval

from mrcnn_tf import visualize
from mrcnn_tf.data import shapes
from mrcnn_tf.data.images import read_image
from mrcnn_tf.evaluation import coco_eval, evaluator, plots

LABELS = coco_eval.LabelMap.from_names(shapes.CLASS_NAMES)
WHITE = np.array([255, 255, 255], np.uint8)


class ErringModel:
    """Answers each image with its ground truth, shifted, some with the wrong class, and one
    background detection, so that every kind of error shows up."""

    def __init__(self, examples):
        self.truth = {ex["image"].tobytes(): ex for ex in examples}

    def predict_images(self, images):
        out = []
        for image in images:
            ex = self.truth[image.tobytes()]
            n = len(ex["boxes"])
            shift = np.array([3 * (i % 3) for i in range(n)])
            boxes = ex["boxes"] + np.stack([0 * shift, shift, 0 * shift, shift], 1)
            classes = np.where(np.arange(n) % 4 == 3, ex["class_ids"] % 3 + 1, ex["class_ids"])
            masks = np.stack([np.roll(m.astype(bool), s, axis=1)
                              for m, s in zip(ex["masks"], shift)]) if n else ex["masks"]
            corner = np.zeros((1,) + image.shape[:2], bool)
            corner[0, :6, :6] = True
            out.append({"boxes": np.concatenate([boxes, [[0, 0, 6, 6]]]).astype(np.float32),
                        "class_ids": np.concatenate([classes, [1]]).astype(np.int32),
                        "scores": np.concatenate([0.95 - 0.1 * np.arange(n), [0.6]]),
                        "masks": np.concatenate([masks.astype(bool), corner])})
        return out


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    """(examples, metrics, collector, results path) of one evaluation with the plot hook."""
    examples = shapes.make_shapes_arrays(8, seed=5, image_size=64)
    results = str(tmp_path_factory.mktemp("plots") / "results.json")
    collector = plots.PlotCollector(score_threshold=0.5, worst=5)
    metrics = evaluator.evaluate_model(ErringModel(examples), examples, LABELS,
                                       print_summary=False, results_path=results,
                                       on_evaluated=collector.on_evaluated)
    return examples, metrics, collector, results


def test_pr_curves_are_cocoevals_precision_and_their_aps_its_ap50_and_ap75(evaluated):
    examples, metrics, collector, results_path = evaluated
    assert set(collector.curves) == {"bbox", "segm"}
    coco_gt = coco_eval.build_coco_ground_truth(examples, LABELS)
    with open(results_path) as f:
        results = json.load(f)
    for iou_type, drop in (("bbox", "segmentation"), ("segm", "bbox")):
        reference = COCOeval(coco_gt, coco_gt.loadRes(
            [{k: v for k, v in r.items() if k != drop} for r in results]), iou_type)
        reference.evaluate()
        reference.accumulate()
        np.testing.assert_allclose(collector.curves[iou_type]["precision"],
                                   reference.eval["precision"][[0, 5], :, :, 0, 2], atol=1e-12)
        assert collector.curves[iou_type]["names"] == list(shapes.CLASS_NAMES)
        for i, stat in enumerate(("AP50", "AP75")):
            data = plots.pr_curve_data(collector.curves[iou_type], i)
            assert data["overall"]["ap"] == pytest.approx(metrics[f"{iou_type}/{stat}"],
                                                          abs=1e-9)
            assert len(data["overall"]["precision"]) == 101
        # The breakdown matched as COCOeval did: its AP50 before any fix is COCOeval's.
        summary = collector.breakdowns[iou_type]
        assert summary["ap50"] == pytest.approx(metrics[f"{iou_type}/AP50"], abs=1e-9)
        assert summary["ap50_all_fixed"] == pytest.approx(1.0)
        assert summary["counts"]["classification"] > 0 and summary["counts"]["background"] > 0


def _colored_pixels(image, color):
    return int(np.sum(np.all(image == np.array(color, np.uint8), axis=-1)))


def test_summary_images_have_their_sizes_lines_and_bars(evaluated):
    _, _, collector, _ = evaluated
    images = plots.summary_images(collector)
    assert set(images) == {"pr_bbox_iou50", "pr_bbox_iou75", "pr_segm_iou50", "pr_segm_iou75",
                           "errors"}
    for name, image in images.items():
        assert image.dtype == np.uint8
        assert image.shape == ((480, 760, 3) if name == "errors" else (420, 560, 3))
        assert np.mean(np.any(image != WHITE, axis=-1)) > 0.02, name
    # The mean curve is black and each class has its chart colour; the bars of both types.
    pr = images["pr_segm_iou50"]
    assert _colored_pixels(pr, (0, 0, 0)) > 300
    for color in visualize.CHART_COLORS[:3]:
        assert _colored_pixels(pr, color) > 50
    for color in visualize.CHART_COLORS[:2]:
        assert _colored_pixels(images["errors"], color) > 200


def test_write_plots_writes_every_file_and_the_numbers(evaluated, tmp_path):
    examples, metrics, collector, _ = evaluated
    written = plots.write_plots(str(tmp_path), collector, examples)
    names = sorted(os.path.basename(p) for p in written)
    assert names == sorted(["pr_bbox_iou50.png", "pr_bbox_iou75.png", "pr_segm_iou50.png",
                            "pr_segm_iou75.png", "errors.png", "worst_images.png",
                            "overview.png", "plots.json"])
    assert sorted(os.listdir(tmp_path)) == names  # nothing half-written left beside them
    with open(tmp_path / "plots.json") as f:
        numbers = json.load(f)
    assert numbers["errors"]["segm"]["ap50"] == pytest.approx(metrics["segm/AP50"], abs=1e-9)
    assert numbers["pr_curves"]["bbox"]["0.75"]["overall"]["ap"] == pytest.approx(
        metrics["bbox/AP75"], abs=1e-9)
    worst = numbers["worst_images"]
    assert worst["iou_type"] == "segm" and 1 <= len(worst["images"]) <= 5
    errors = [im["fp"] + im["fn"] for im in worst["images"]]
    assert errors == sorted(errors, reverse=True) and errors[-1] > 0
    # Tiles of 256 + 2 caption lines, 4 to a row, under a 2-line legend.
    grid = read_image(str(tmp_path / "worst_images.png"))
    rows = -(-len(worst["images"]) // 4)
    columns = min(4, len(worst["images"]))
    assert grid.shape == (36 + rows * 288 + (rows - 1) * 4, columns * 256 + (columns - 1) * 4,
                          3)
    # The first tile: its image scaled 4x, green (found) or red (missed) truth boxes drawn.
    tile = grid[36:36 + 256, :256]
    assert _colored_pixels(tile, (0, 200, 0)) + _colored_pixels(tile, (230, 0, 0)) > 100
    overview = read_image(str(tmp_path / "overview.png"))
    assert overview.shape[1] == 560 + 8 + 760 and overview.shape[0] > 480 + grid.shape[0]


def test_worst_images_are_read_again_by_load_example_when_the_dataset_has_it(evaluated):
    examples, _, _, _ = evaluated

    class Dataset:
        def __init__(self):
            self.loaded = []

        def __iter__(self):
            raise AssertionError("the dataset was walked instead of loading two images")

        def load_example(self, image_id):
            self.loaded.append(image_id)
            return next(ex for ex in examples if int(ex["image_id"]) == image_id)

    dataset = Dataset()
    ids = [int(examples[3]["image_id"]), int(examples[1]["image_id"])]
    from mrcnn_tf.evaluation import worst_images  # noqa: PLC0415
    assert sorted(worst_images.fetch_examples(dataset, ids)) == sorted(ids)
    assert sorted(dataset.loaded) == sorted(ids)
    walked = worst_images.fetch_examples(iter(examples), ids)
    assert sorted(walked) == sorted(ids)


def _summaries(folder):
    """{tag: [decoded image]} of the image summaries in an event folder."""
    found = {}
    for name in os.listdir(folder):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(folder, name)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == "images":
                    png = tf.make_ndarray(value.tensor)[2]
                    found.setdefault(value.tag, []).append(tf.io.decode_png(png).numpy())
    return found


@pytest.mark.parametrize("with_plots", [True, False])
def test_callback_writes_the_plots_to_tensorboard(evaluated, tmp_path, with_plots):
    examples, _, _, _ = evaluated
    callback = evaluator.COCOEvalCallback(examples, LABELS, log_dir=str(tmp_path),
                                          image_summaries=1, plots=with_plots)
    callback.set_model(ErringModel(examples))
    callback.on_epoch_end(0, {})
    images = _summaries(tmp_path / "eval")
    plotted = sorted(tag for tag in images if tag.startswith("plots/"))
    assert "predictions/0" in images
    if not with_plots:
        assert plotted == [] and callback.plot_seconds is None
        return
    assert plotted == ["plots/errors", "plots/pr_bbox_iou50", "plots/pr_bbox_iou75",
                       "plots/pr_segm_iou50", "plots/pr_segm_iou75"]
    assert images["plots/errors"][0].shape == (480, 760, 3)
    assert images["plots/pr_segm_iou50"][0].shape == (420, 560, 3)
    assert 0 < callback.plot_seconds < 30


def test_keypoint_curves_are_cocoevals_at_20_detections():
    labels = coco_eval.LabelMap((1,), ("person",))
    examples, results = [], []
    for image_id in (1, 2):
        boxes = np.array([[4, 4, 40, 40], [30, 20, 60, 60]], np.float32)[:image_id]
        masks = np.zeros((len(boxes), 64, 64), np.uint8)
        for mask, (y1, x1, y2, x2) in zip(masks, boxes.astype(int)):
            mask[y1:y2, x1:x2] = 1
        keypoints = np.stack([boxes[:, :2] + 5.5, boxes[:, 2:] - 5.5], 1)  # (y, x) x 2
        examples.append({"image": np.zeros((64, 64, 3), np.uint8), "image_id": image_id,
                         "boxes": boxes, "class_ids": np.ones(len(boxes), np.int32),
                         "masks": masks, "is_crowd": np.zeros(len(boxes), bool),
                         "keypoints": np.concatenate([keypoints, np.full((len(boxes), 2, 1), 2)],
                                                     -1).astype(np.float32)})
        predicted = examples[-1]["keypoints"] + np.float32([0, 4.0 * image_id, 0])
        results += coco_eval.predictions_to_coco_results(image_id, {
            "boxes": boxes, "class_ids": np.ones(len(boxes)), "scores": [0.9, 0.7][:len(boxes)],
            "keypoints": predicted}, labels)
    coco_gt = coco_eval.build_coco_ground_truth(examples, labels, ("a", "b"), (0, 1))
    collector = plots.PlotCollector()
    metrics = coco_eval.evaluate_coco(coco_gt, results, ("bbox", "keypoints"),
                                      print_summary=False, oks_sigmas=(0.1, 0.1),
                                      on_evaluated=collector.on_evaluated)
    assert 0 < metrics["keypoints/AP75"] < metrics["keypoints/AP50"] <= 1
    reference = COCOeval(coco_gt, coco_gt.loadRes(
        [{k: v for k, v in r.items() if k != "segmentation"} for r in results]), "keypoints")
    reference.params.kpt_oks_sigmas = np.array([0.1, 0.1])
    reference.evaluate()
    reference.accumulate()
    np.testing.assert_allclose(collector.curves["keypoints"]["precision"],
                               reference.eval["precision"][[0, 5], :, :, 0, 0], atol=1e-12)
    assert plots.pr_curve_data(collector.curves["keypoints"], 1)["overall"]["ap"] == (
        pytest.approx(metrics["keypoints/AP75"], abs=1e-9))
    assert set(collector.breakdowns) == {"bbox"}  # TIDE's errors are box and mask ones
    assert "pr_keypoints_iou50" in plots.summary_images(collector)
