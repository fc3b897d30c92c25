"""The default COCOeval backend (faster-coco-eval) against pycocotools' COCOeval, the reference:
the same 12 box and mask numbers, 10 keypoint numbers, per-category AP and precision tables (to
1e-4) on small random ground truth with crowd regions, images without ground truth, tied
scores, more than 100 detections in an image, empty masks, and image and category subsets."""

import contextlib
import io

import numpy as np
import pytest
from faster_coco_eval import COCOeval_faster
from pycocotools import mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn_tf.evaluation import coco_eval

TOLERANCE = 1e-4
WIDTH, HEIGHT = 64, 48
CATEGORY_IDS = (0, 3, 7, 9)  # 0 included; 9 never appears in the ground truth
KEYPOINTS = 5
SIGMAS = (0.04, 0.06, 0.08, 0.1, 0.12)  # not COCO's


def _coco(dataset):
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _polygon(rng, scale=1.0):
    """A hexagon [6, 2] (x, y) inside the image, `scale` times a random size."""
    cx, cy = rng.uniform(8, WIDTH - 8), rng.uniform(8, HEIGHT - 8)
    radius = rng.uniform(2, 16) * scale
    angles = np.arange(6) / 6 * 2 * np.pi + rng.uniform(-0.2, 0.2, 6)
    points = np.stack([cx + radius * np.cos(angles), cy + radius * np.sin(angles)], -1)
    return np.clip(points, 0, [WIDTH, HEIGHT])


def _rle(polygon):
    """Compressed RLE (counts as str) of a polygon [V, 2]."""
    [rle] = mask_util.frPyObjects([polygon.reshape(-1).tolist()], HEIGHT, WIDTH)
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _uncompressed_rle(polygon):
    """COCO's crowd form: runs down the columns as a list, starting with zeros."""
    flat = mask_util.decode(mask_util.frPyObjects([polygon.reshape(-1).tolist()], HEIGHT,
                                                  WIDTH))[..., 0].reshape(-1, order="F")
    edges = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = ([0] if flat[0] else []) + np.diff(edges).tolist()
    return {"size": [HEIGHT, WIDTH], "counts": counts}


def _boxes_and_masks(seed, num_images=8):
    """(ground truth dict, results): image 1 has no ground truth, about 15% of instances are
    crowd regions (uncompressed RLE), some polygons are given as compressed RLE; results are
    jittered instances and false positives with scores on a 0.05 grid (ties), image 2 gets
    130 (past maxDets 100), one result has an empty mask."""
    rng = np.random.default_rng(seed)
    images = [{"id": i, "width": WIDTH, "height": HEIGHT} for i in range(1, num_images + 1)]
    annotations, results, polygons_of = [], [], {}
    for image in images:
        count = 0 if image["id"] == 1 else int(rng.integers(1, 7))
        for _ in range(count):
            polygon = _polygon(rng)
            polygons_of[len(annotations) + 1] = polygon
            crowd = rng.random() < 0.15
            segmentation = (_uncompressed_rle(polygon) if crowd else
                            _rle(polygon) if rng.random() < 0.2 else
                            [polygon.reshape(-1).tolist()])
            rle = mask_util.frPyObjects([polygon.reshape(-1).tolist()], HEIGHT, WIDTH)
            annotations.append({
                "id": len(annotations) + 1, "image_id": image["id"],
                "category_id": int(rng.choice(CATEGORY_IDS[:3])), "iscrowd": int(crowd),
                "segmentation": segmentation, "area": float(mask_util.area(rle)[0]),
                "bbox": mask_util.toBbox(rle)[0].tolist()})
    for image in images:
        own = [a for a in annotations if a["image_id"] == image["id"]]
        polygons = []
        for a in own:  # 0-2 detections near each instance, crowd regions included
            for _ in range(int(rng.integers(0, 3))):
                moved = (polygons_of[a["id"]] + rng.normal(0, 1.0, 2)
                         + rng.normal(0, 0.7, (6, 2)))
                polygons.append((moved, a["category_id"] if rng.random() < 0.85 else 7, 0.3))
        extra = 130 if image["id"] == 2 else int(rng.integers(2, 9))
        polygons += [(_polygon(rng, 0.6), int(rng.choice(CATEGORY_IDS)), 0.0)
                     for _ in range(extra)]
        for polygon, category, least in polygons:
            polygon = np.clip(polygon, 0, [WIDTH, HEIGHT])
            low, high = polygon.min(0), polygon.max(0)
            score = np.round(rng.uniform(least + 0.05, least + 0.7) / 0.05) * 0.05
            results.append({"image_id": image["id"], "category_id": category,
                            "score": float(score),
                            "bbox": [*low.tolist(), *(high - low + rng.normal(0, 1, 2)).tolist()],
                            "segmentation": _rle(polygon)})
    results[-1]["segmentation"] = _rle(np.zeros([6, 2]))  # an empty mask
    categories = [{"id": c, "name": f"category {c}"} for c in CATEGORY_IDS]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def _people(seed, num_images=6):
    """(keypoint ground truth dict, results): people with some keypoints unlabelled, some with
    none (ignored), a crowd one, plus a "ball" category without keypoints that keypoint
    evaluation must leave out; results are jittered people and false positives, tied scores."""
    rng = np.random.default_rng(seed)
    images = [{"id": i, "width": WIDTH, "height": HEIGHT} for i in range(1, num_images + 1)]
    annotations, results = [], []

    def person(image_id, box, points, visible, crowd=0):
        rows = np.concatenate([points * (visible[:, None] > 0), visible[:, None]], 1)
        annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                            "category_id": 2, "bbox": box.tolist(), "iscrowd": crowd,
                            "area": float(box[2] * box[3]), "keypoints": rows.reshape(-1).tolist(),
                            "num_keypoints": int((visible > 0).sum())})

    for image in images:
        for _ in range(0 if image["id"] == 1 else int(rng.integers(1, 4))):
            box = np.array([rng.uniform(0, 30), rng.uniform(0, 20), rng.uniform(12, 34),
                            rng.uniform(12, 28)])
            points = box[:2] + rng.random((KEYPOINTS, 2)) * box[2:]
            visible = rng.choice(3, KEYPOINTS, p=(0.3, 0.2, 0.5))
            if rng.random() < 0.15:
                visible[:] = 0
            person(image["id"], box, points, visible, crowd=int(rng.random() < 0.1))
            for _ in range(int(rng.integers(0, 3))):
                moved = points + rng.normal(0, 2.0, points.shape)
                results.append({"image_id": image["id"], "category_id": 2,
                                "score": float(np.round(rng.uniform(0.1, 1.0), 1)),
                                "bbox": box.tolist(),
                                "keypoints": np.concatenate(
                                    [moved, rng.random((KEYPOINTS, 1))], 1).reshape(-1).tolist()})
        for _ in range(int(rng.integers(1, 5))):
            box = np.array([rng.uniform(0, 40), rng.uniform(0, 30), 20.0, 16.0])
            points = box[:2] + rng.random((KEYPOINTS, 2)) * box[2:]
            results.append({"image_id": image["id"], "category_id": 2,
                            "score": float(np.round(rng.uniform(0.1, 0.5), 1)),
                            "bbox": box.tolist(),
                            "keypoints": np.concatenate([points, np.ones((KEYPOINTS, 1))],
                                                        1).reshape(-1).tolist()})
        annotations.append({"id": len(annotations) + 1, "image_id": image["id"],
                            "category_id": 5, "bbox": [1.0, 1.0, 5.0, 5.0], "area": 25.0,
                            "iscrowd": 0, "segmentation": [[1, 1, 6, 1, 6, 6, 1, 6]]})
    categories = [{"id": 2, "name": "person", "keypoints": [f"k{i}" for i in range(KEYPOINTS)],
                   "skeleton": [[1, 2]]}, {"id": 5, "name": "ball"}]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def _evaluate(dataset, results, backend, **kwargs):
    """evaluate_coco on a fresh COCO of `dataset` (COCOeval changes the annotations it reads)."""
    return coco_eval.evaluate_coco(_coco(dataset), results, print_summary=False,
                                   backend=backend, **kwargs)


def _assert_same_metrics(ours, reference, iou_types):
    assert set(ours) == set(reference)
    for t in iou_types:
        names = coco_eval.stat_names(t)
        np.testing.assert_allclose([ours[f"{t}/{s}"] for s in names],
                                   [reference[f"{t}/{s}"] for s in names],
                                   rtol=0, atol=TOLERANCE, err_msg=t)
        per_category = ours[f"{t}/per_category"]
        assert list(per_category) == list(reference[f"{t}/per_category"]), t
        np.testing.assert_allclose(list(per_category.values()),
                                   list(reference[f"{t}/per_category"].values()),
                                   rtol=0, atol=TOLERANCE, err_msg=f"{t} per category")


@pytest.fixture
def default_environment(monkeypatch):
    monkeypatch.delenv(coco_eval.BACKEND_ENV, raising=False)


def test_the_default_backend_is_faster_coco_eval_and_the_variable_picks_pycocotools(
        default_environment, monkeypatch):
    coco = _coco(_boxes_and_masks(0, num_images=2)[0])
    assert coco_eval.default_backend() == "faster"
    assert isinstance(coco_eval.make_cocoeval(coco, coco, "bbox"), COCOeval_faster)
    monkeypatch.setenv(coco_eval.BACKEND_ENV, "pycocotools")
    made = coco_eval.make_cocoeval(coco, coco, "segm")
    assert type(made) is COCOeval and made.params.iouType == "segm"
    monkeypatch.setenv(coco_eval.BACKEND_ENV, "fast")
    with pytest.raises(ValueError, match="MRCNN_TF_COCOEVAL='fast'"):
        coco_eval.default_backend()
    with pytest.raises(ValueError, match="backend 'slow'"):
        coco_eval.evaluate_coco(coco, [], backend="slow")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_boxes_and_masks_equal_pycocotools(default_environment, seed):
    dataset, results = _boxes_and_masks(seed)
    ours = _evaluate(dataset, results, None)
    reference = _evaluate(dataset, results, "pycocotools")
    _assert_same_metrics(ours, reference, ("bbox", "segm"))
    # The numbers compared are real ones: neither all misses nor all hits, and a category
    # without ground truth is -1 in both.
    for t in ("bbox", "segm"):
        assert 0.05 < ours[f"{t}/AP"] < 0.95, (t, ours[f"{t}/AP"])
        assert ours[f"{t}/per_category"]["category 9"] == -1.0


def test_an_image_subset_equals_pycocotools(default_environment):
    dataset, results = _boxes_and_masks(3)
    kept = [1, 2, 5, 6]  # image 1 has no ground truth; results elsewhere are left out
    results = [r for r in results if r["image_id"] in kept or r["image_id"] == 3]
    ours = _evaluate(dataset, results, None, image_ids=kept)
    reference = _evaluate(dataset, results, "pycocotools", image_ids=kept)
    _assert_same_metrics(ours, reference, ("bbox", "segm"))
    assert ours["bbox/AP"] != _evaluate(dataset, results, None)["bbox/AP"]


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_precision_tables_equal_pycocotools_with_image_and_category_subsets(iou_type):
    """make_cocoeval itself, params changed as a caller would: the tables per_category_ap and
    the summary read have the same shape and values."""
    dataset, results = _boxes_and_masks(4)
    results = coco_eval._results_for(iou_type, results)  # noqa: SLF001 (what evaluate_coco loads)
    tables = {}
    for backend in coco_eval.COCOEVAL_BACKENDS:
        coco_gt = _coco(dataset)
        with contextlib.redirect_stdout(io.StringIO()):
            coco_dt = coco_gt.loadRes([dict(r) for r in results])
            made = coco_eval.make_cocoeval(coco_gt, coco_dt, iou_type, backend)
            made.params.imgIds = [2, 3, 4, 7]
            made.params.catIds = [7, 0, 9]
            made.evaluate()
            made.accumulate()
            made.summarize()
        tables[backend] = made
    ours, reference = tables["faster"], tables["pycocotools"]
    for key in ("precision", "recall", "scores"):
        assert ours.eval[key].shape == reference.eval[key].shape, key
        np.testing.assert_allclose(ours.eval[key], reference.eval[key], rtol=0, atol=TOLERANCE,
                                   err_msg=key)
    assert ours.eval["precision"].shape == (10, 101, 3, 4, 3)
    np.testing.assert_allclose(ours.stats, reference.stats, rtol=0, atol=TOLERANCE)
    assert 0 < reference.stats[0] < 1


@pytest.mark.parametrize("seed", [0, 1])
def test_keypoints_equal_pycocotools(default_environment, seed):
    dataset, results = _people(seed)
    kwargs = {"iou_types": ("keypoints",), "oks_sigmas": SIGMAS}
    ours = _evaluate(dataset, results, None, **kwargs)
    reference = _evaluate(dataset, results, "pycocotools", **kwargs)
    _assert_same_metrics(ours, reference, ("keypoints",))
    assert list(ours["keypoints/per_category"]) == ["person"]  # the ball is left out
    assert 0.05 < ours["keypoints/AP"] < 0.95
    subset = _evaluate(dataset, results, None, image_ids=[1, 3, 4], **kwargs)
    _assert_same_metrics(subset, _evaluate(dataset, results, "pycocotools",
                                           image_ids=[1, 3, 4], **kwargs), ("keypoints",))


def test_results_only_where_there_is_no_ground_truth_and_no_results(default_environment):
    dataset, results = _boxes_and_masks(5)
    on_empty_image = [r for r in results if r["image_id"] == 1]
    assert on_empty_image
    ours = _evaluate(dataset, on_empty_image, None)
    _assert_same_metrics(ours, _evaluate(dataset, on_empty_image, "pycocotools"),
                         ("bbox", "segm"))
    assert ours["bbox/AP"] == 0.0 and ours["segm/AR100"] == 0.0
    empty = _evaluate(dataset, [], None)
    _assert_same_metrics(empty, _evaluate(dataset, [], "pycocotools"), ("bbox", "segm"))


def test_one_ground_truth_serves_both_backends_in_turn(default_environment):
    """COCOeval leaves its marks on the ground truth it reads (pycocotools turns polygons
    into RLEs, faster-coco-eval adds "rle"): evaluating again on the same COCO, with either
    backend first, gives the same numbers, as a training run evaluating every epoch does."""
    dataset, results = _boxes_and_masks(6)
    coco = _coco(dataset)
    first = coco_eval.evaluate_coco(coco, results, print_summary=False)
    reference = coco_eval.evaluate_coco(coco, results, print_summary=False,
                                        backend="pycocotools")
    again = coco_eval.evaluate_coco(coco, results, print_summary=False)
    _assert_same_metrics(first, reference, ("bbox", "segm"))
    _assert_same_metrics(again, reference, ("bbox", "segm"))


def test_the_summary_is_printed_by_the_default_backend(default_environment, capsys):
    dataset, results = _boxes_and_masks(7, num_images=3)
    coco_eval.evaluate_coco(_coco(dataset), results, iou_types=("segm",), print_summary=True)
    printed = capsys.readouterr().out
    assert "COCO segm evaluation:" in printed
    assert printed.count("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all") == 1
    assert "Evaluate annotation type" not in printed  # progress lines stay quiet
