"""Tests for mrcnn_tf.prediction: input expansion, image ids, overlays and COCO results."""

import contextlib
import io
import json
import logging
import os
import types

import keras
import numpy as np
import pytest
from pycocotools.coco import COCO

from helpers import small_model_config  # noqa: E402
from mrcnn_tf import postprocess, prediction, visualize
from mrcnn_tf.data.shapes import CLASS_NAMES, generate_shapes_example
from mrcnn_tf.evaluation import coco_eval
from mrcnn_tf.labels import LabelMap
from mrcnn_tf.data.images import read_image
from mrcnn_tf.io_utils import write_png_atomic
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN

# Dataset ids that are not 1..K (0 included), so a results file with contiguous ids fails.
CATEGORY_IDS = [7, 0, 42]
SIZE = 64


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    return MaskRCNN(small_model_config(SIZE), class_names=list(CLASS_NAMES),
                    category_ids=CATEGORY_IDS)


def _touch(path, data=b"x"):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


# ---------------------------------------------------------------------------------------------
# expand_inputs
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path):
    root = str(tmp_path)
    for name in ("a/x.png", "a/Y.JPG", "a/notes.txt", "a/sub/z.png", "b/w.bmp", "b/v.jpeg",
                 "b/u.Png", "c.png", "d.tif"):
        _touch(os.path.join(root, name))
    os.makedirs(os.path.join(root, "empty"))
    return root


def test_expand_inputs_files_folders_globs_sorted_and_unique(tree):
    j = lambda *p: os.path.join(tree, *p)  # noqa: E731
    got = prediction.expand_inputs([
        j("c.png"),
        j("a"),                       # folder: images only, any case, not recursive
        j("b", "*.bmp"),              # glob
        j("a", "x.png"),              # duplicate of a folder member
        j("b", "..", "a", "x.png"),   # same file, another spelling
        j("d.tif"),                   # named explicitly: taken whatever the extension
    ])
    assert got == sorted([j("a", "Y.JPG"), j("a", "x.png"), j("b", "w.bmp"), j("c.png"),
                          j("d.tif")])


def test_expand_inputs_glob_filters_extensions_and_recurses(tree):
    j = lambda *p: os.path.join(tree, *p)  # noqa: E731
    assert prediction.expand_inputs(j("b", "*")) == [j("b", "u.Png"), j("b", "v.jpeg"),
                                                      j("b", "w.bmp")]
    assert prediction.expand_inputs(j("**", "*.png")) == [j("a", "sub", "z.png"),
                                                           j("a", "x.png"), j("c.png")]
    # A glob matching a folder gives that folder's images; a single string is one pattern.
    assert prediction.expand_inputs(j("a*")) == [j("a", "Y.JPG"), j("a", "x.png")]


@pytest.mark.parametrize("bad", ["*.gif", os.path.join("nope", "x.png"), "empty"])
def test_expand_inputs_names_the_pattern_that_matches_nothing(tree, bad):
    pattern = os.path.join(tree, bad)
    with pytest.raises(ValueError, match="matches no image|no such file|no image files") as e:
        prediction.expand_inputs([os.path.join(tree, "c.png"), pattern])
    assert pattern in str(e.value)


def test_expand_inputs_rejects_no_inputs():
    with pytest.raises(ValueError, match="no inputs"):
        prediction.expand_inputs([])


# ---------------------------------------------------------------------------------------------
# image ids
# ---------------------------------------------------------------------------------------------


def test_image_ids_from_annotations(tmp_path):
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": [
        {"id": 11, "file_name": "val/img1.png", "width": 4, "height": 4},
        {"id": 0, "file_name": "img2.png"},
        {"id": 5, "file_name": "x/dup.png"},
        {"id": 6, "file_name": "y/dup.png"},
    ], "annotations": [], "categories": []}))
    ids = prediction.image_ids_from_annotations(path)
    assert ids["val/img1.png"] == 11 and ids["img1.png"] == 11
    assert ids["img2.png"] == 0
    assert ids["x/dup.png"] == 5 and ids["y/dup.png"] == 6
    assert "dup.png" not in ids  # ambiguous basename: never guessed
    assert prediction.resolve_image_ids(
        ["/data/val/img1.png", "img2.png", "/data/y/dup.png"], ids) == [11, 0, 6]
    with pytest.raises(ValueError, match="dup.png"):
        prediction.resolve_image_ids(["/data/z/dup.png"], ids)


@pytest.mark.parametrize("content, match", [
    ("[1, 2]", "not a COCO annotations file"),
    ('{"annotations": []}', "not a COCO annotations file"),
    ('{"images": [{"file_name": "a.png"}]}', r"images\[0\]"),
    ('{"images": [{"id": "seven", "file_name": "a.png"}]}', "'id' must be an integer"),
    ("{not json", "not a JSON file"),
])
def test_image_ids_from_annotations_rejects_non_coco_files(tmp_path, content, match):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as e:
        prediction.image_ids_from_annotations(path)
    assert str(path) in str(e.value)


def test_overlay_names_are_unique_and_deterministic():
    names = prediction.overlay_names(["a/img.png", "b/img.jpg", "img_2.png", "c/IMG.bmp"])
    assert names == ["img.png", "img_2.png", "img_2_2.png", "IMG_3.png"]


# ---------------------------------------------------------------------------------------------
# predict_files with the real (untrained) model
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_files(tmp_path_factory):
    """Three shapes images (two sharing a stem) and two unreadable files, in input order."""
    root = tmp_path_factory.mktemp("images")
    examples, paths = [], []
    for index, rel in [(0, "one/shape.png"), (1, "two/shape.png"), (2, "third.png")]:
        ex = generate_shapes_example(index, seed=3, image_size=SIZE)
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_png_atomic(path, ex["image"])
        examples.append(ex)
        paths.append(path)
    corrupt = _touch(os.path.join(root, "corrupt.png"), b"\x89PNG\r\n\x1a\n garbage")
    empty = _touch(os.path.join(root, "empty.jpg"), b"")
    return {"examples": examples, "paths": paths, "corrupt": corrupt, "empty": empty}


def test_predict_files_writes_overlays_and_loadable_coco_results(model, image_files, tmp_path,
                                                                 caplog):
    p = image_files["paths"]
    inputs = [p[0], image_files["corrupt"], p[1], p[2], image_files["empty"]]
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        summary = prediction.predict_files(model, inputs, out, score_threshold=0.0)

    assert summary["images"] == 3 and summary["skipped"] == 2
    assert summary["skipped_files"] == [image_files["corrupt"], image_files["empty"]]
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert image_files["corrupt"] in warned and image_files["empty"] in warned
    # One overlay per readable input, named after it (the shared stem disambiguated), with
    # the input's size.
    assert summary["overlays"] == [str(out / "shape.png"), str(out / "shape_2.png"),
                                   str(out / "third.png")]
    for path, ex in zip(summary["overlays"], image_files["examples"]):
        assert read_image(path).shape == ex["image"].shape
    assert sorted(os.listdir(out)) == ["results.json", "shape.png", "shape_2.png", "third.png"]

    with open(summary["results_path"]) as f:
        results = json.load(f)
    assert summary["results_path"] == str(out / "results.json")
    assert len(results) == summary["detections"] > 0  # score threshold 0: untrained answers
    # Ids are 1-based positions in the input list: the skipped file keeps its number.
    assert {r["image_id"] for r in results} <= {1, 3, 4}
    assert {r["file_name"] for r in results} <= set(p)
    assert {r["category_id"] for r in results} <= set(CATEGORY_IDS)
    for r in results:
        assert {"bbox", "score", "segmentation"} <= set(r)

    # The file scores against ground truth of the same images with pycocotools.
    gt_examples = [dict(ex, image_id=i) for ex, i in zip(image_files["examples"], (1, 3, 4))]
    coco_gt = coco_eval.build_coco_ground_truth(gt_examples, model.label_map)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(summary["results_path"])
    assert len(coco_dt.getAnnIds()) == len(results)
    metrics = coco_eval.evaluate_coco(coco_gt, summary["results_path"], print_summary=False)
    assert 0.0 <= metrics["bbox/AP"] <= 1.0


def test_predict_files_in_batches_writes_what_one_at_a_time_writes(model, image_files,
                                                                     tmp_path):
    """Batches of 2 across an unreadable file: the same skips, overlays and results."""
    p = image_files["paths"]
    inputs = [p[0], image_files["corrupt"], p[1], p[2], image_files["empty"]]
    one = prediction.predict_files(model, inputs, tmp_path / "one", score_threshold=0.0)
    two = prediction.predict_files(model, inputs, tmp_path / "two", score_threshold=0.0,
                                   batch_size=2)
    assert two["skipped_files"] == one["skipped_files"]
    assert [os.path.basename(o) for o in two["overlays"]] == [
        os.path.basename(o) for o in one["overlays"]]
    results = [json.loads(open(s["results_path"]).read()) for s in (one, two)]
    assert len(results[1]) == len(results[0]) > 0
    for a, b in zip(*results):
        assert (a["image_id"], a["category_id"], a["file_name"]) == (
            b["image_id"], b["category_id"], b["file_name"])
        np.testing.assert_allclose(b["bbox"], a["bbox"], atol=1e-2)
        assert abs(a["score"] - b["score"]) < 1e-5
    with pytest.raises(ValueError, match="batch_size=0"):
        prediction.predict_files(model, inputs, tmp_path / "x", batch_size=0)


def test_predict_files_takes_image_ids_from_the_mapping(model, image_files, tmp_path):
    p = image_files["paths"]
    examples = [dict(ex, image_id=i, file_name=os.path.relpath(path, os.path.dirname(
        os.path.dirname(path)))) for ex, i, path in zip(image_files["examples"], (70, 0, 9), p)]
    ann_path = tmp_path / "instances.json"
    coco_eval.write_coco_json(examples, model.label_map, ann_path)
    ids = prediction.image_ids_from_annotations(ann_path)
    results_path = tmp_path / "res" / "detections.json"
    summary = prediction.predict_files(model, p, tmp_path / "out", score_threshold=0.0,
                                       results_path=results_path, image_ids=ids)
    assert summary["results_path"] == str(results_path)
    results = json.loads(results_path.read_text())
    by_file = {r["file_name"]: r["image_id"] for r in results}
    assert by_file == {p[0]: 70, p[1]: 0, p[2]: 9}
    with contextlib.redirect_stdout(io.StringIO()):
        COCO(str(ann_path)).loadRes(str(results_path))


def test_predict_files_checks_the_mapping_before_reading_anything(model, image_files, tmp_path):
    p = image_files["paths"]
    with pytest.raises(ValueError, match="third.png"):
        prediction.predict_files(model, p, tmp_path / "out",
                                 image_ids={"one/shape.png": 1, "two/shape.png": 2})
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


# ---------------------------------------------------------------------------------------------
# overlay pixels, with a known detection
# ---------------------------------------------------------------------------------------------


def _known_prediction(height, width):
    """Detection A (class 2, score 0.9) top-left, detection B (class 1, score 0.3)
    bottom-right; full-image masks inside their boxes."""
    boxes = np.asarray([[24, 8, 56, 40], [76, 60, 92, 90]], np.float32)
    masks = np.zeros([2, height, width], bool)
    masks[0, 28:52, 12:36] = True
    masks[1, 80:90, 64:86] = True
    return {"boxes": boxes, "class_ids": np.asarray([2, 1], np.int32),
            "scores": np.asarray([0.9, 0.3], np.float32), "masks": masks,
            "category_ids": np.asarray([0, 7]), "class_names": ["circle", "square"]}


def _finished(pred, score_threshold):
    """What predict_images returns for the detections `pred` (full-image masks) at the
    threshold: `postprocess.finish_detections` of them."""
    rows = {k: v for k, v in pred.items() if k not in ("category_ids", "class_names", "masks")}
    if "masks" in pred:
        rows["image_masks"] = pred["masks"]
    height, width = pred["masks"].shape[1:] if "masks" in pred else (96, 96)
    return postprocess.finish_detections(rows, height, width, score_threshold,
                                         label_map=LabelMap(CATEGORY_IDS, CLASS_NAMES))


@pytest.mark.parametrize("threshold", [0.5, 0.2])
def test_overlay_changes_exactly_where_detections_pass_the_threshold(model, tmp_path,
                                                                   monkeypatch, threshold):
    h, w = 96, 96
    image = np.full([h, w, 3], 128, np.uint8)
    path = str(tmp_path / "grey.png")
    write_png_atomic(path, image)
    calls = []

    def fake_predict_images(images, score_threshold, batch_size):
        calls.append((images[0].shape, score_threshold))
        return [_finished(_known_prediction(*images[0].shape[:2]), score_threshold)]

    monkeypatch.setattr(model, "predict_images", fake_predict_images)
    summary = prediction.predict_files(model, [path], tmp_path / "out",
                                       score_threshold=threshold)
    assert calls == [((h, w, 3), threshold)]  # kept by score inside predict_images
    overlay = read_image(summary["overlays"][0])
    changed = np.any(overlay != image, axis=-1)

    pred = _known_prediction(h, w)
    # Detection A: its whole mask is tinted.
    assert changed[pred["masks"][0]].all()
    # Nothing changes outside A's box and its label band just above the box...
    allowed = np.zeros([h, w], bool)
    allowed[24 - 20:56, 8:] = True  # label: above the box's top-left, extending right
    kept = [0]
    if threshold > 0.3:
        assert not changed[~allowed].any()
        # ...and B, below the threshold, is not drawn at all.
        assert not changed[76:92, 60:90].any()
    else:
        assert changed[pred["masks"][1]].all()
        kept = [0, 1]
    # Exactly the drawing of the detections that pass, nothing else.
    expected = visualize.draw_instances(image, pred["boxes"][kept], pred["class_ids"][kept],
                                        pred["scores"][kept], pred["masks"][kept],
                                        model.label_map.class_names)
    np.testing.assert_array_equal(overlay, expected)

    results = json.loads(open(summary["results_path"]).read())
    expected_ids = [0] if threshold > 0.3 else [0, 7]  # dataset ids of classes 2 and 1
    assert [r["category_id"] for r in results] == expected_ids
    assert results[0]["bbox"] == [8.0, 24.0, 32.0, 32.0]  # COCO x, y, w, h
    assert summary["detections"] == len(expected_ids)


# ---------------------------------------------------------------------------------------------
# poses: keypoints, and predictions without masks (mask_on=False)
# ---------------------------------------------------------------------------------------------

SKELETON = (0, 1, 1, 2)


def _pose_prediction(height, width):
    """`_known_prediction` without masks (a mask_on=False model) and with K = 3 keypoints:
    A's first two on row 32 (pixel centres), its third scoring 0.2; B's inside B's box."""
    pred = _known_prediction(height, width)
    del pred["masks"]
    pred["keypoints"] = np.asarray([
        [[32.5, 14.5, 0.9], [32.5, 34.5, 0.6], [48.5, 24.5, 0.2]],
        [[84.5, 66.5, 0.9], [84.5, 84.5, 0.9], [80.5, 75.5, 0.9]],
    ], np.float32)
    return pred


def test_draw_prediction_draws_pose_without_masks():
    h, w = 96, 96
    image = np.full([h, w, 3], 128, np.uint8)
    pred = _pose_prediction(h, w)
    names = ["background", "square", "circle"]
    overlay = prediction.draw_prediction(image, _finished(pred, 0.5), names,
                                         skeleton=SKELETON, keypoint_threshold=0.3)
    np.testing.assert_array_equal(image, 128)  # input untouched
    changed = np.any(overlay != image, axis=-1)
    # No mask: inside A's box, away from its edges and its pose, nothing is tinted.
    assert not changed[38:46, 12:36].any()
    # A's pose: its two keypoints and the limb between them; the 0.2 keypoint (below 0.3)
    # and its limb are not drawn. B (score 0.3 < 0.5) has no pose.
    assert changed[32, 14] and changed[32, 34] and changed[32, 16:33].all()
    assert not changed[40:55, 14:36].any()
    assert not changed[62:, :].any()
    # Exactly draw_instances of the kept detection without masks.
    expected = visualize.draw_instances(image, pred["boxes"][:1], pred["class_ids"][:1],
                                        pred["scores"][:1], None, names,
                                        keypoints=pred["keypoints"][:1], skeleton=SKELETON,
                                        keypoint_threshold=0.3)
    np.testing.assert_array_equal(overlay, expected)
    # The default keypoint threshold (0.05) keeps the 0.2 keypoint.
    default = prediction.draw_prediction(image, _finished(pred, 0.5), names, skeleton=SKELETON)
    assert np.any(default[48, 24] != 128)


def test_kept_detections_keep_their_keypoints():
    pred = _pose_prediction(96, 96)
    kept = _finished(pred, 0.5)
    assert "masks" not in kept
    np.testing.assert_array_equal(kept["keypoints"], pred["keypoints"][:1])
    assert kept["keypoints"].dtype == np.float32
    assert "keypoints" not in _finished(_known_prediction(96, 96), 0.5)


def test_predict_files_draws_poses_with_the_models_skeleton(model, tmp_path):
    h, w = 96, 96
    image = np.full([h, w, 3], 128, np.uint8)
    path = str(tmp_path / "grey.png")
    write_png_atomic(path, image)
    # Anything with predict_images, label_map and config is a model to predict_files.
    keypoint_model = types.SimpleNamespace(
        label_map=model.label_map, config=types.SimpleNamespace(keypoint_skeleton=SKELETON),
        predict_images=lambda images, score_threshold, batch_size: [
            _finished(_pose_prediction(*images[0].shape[:2]), score_threshold)])
    summary = prediction.predict_files(keypoint_model, [path], tmp_path / "out",
                                       score_threshold=0.5, keypoint_threshold=0.3)
    overlay = read_image(summary["overlays"][0])
    expected = prediction.draw_prediction(image, _finished(_pose_prediction(h, w), 0.5),
                                          model.label_map.class_names, skeleton=SKELETON,
                                          keypoint_threshold=0.3)
    np.testing.assert_array_equal(overlay, expected)
    assert np.any(overlay[32, 24] != 128)  # the limb 0-1: the skeleton came from the config
    assert summary["detections"] == 1


def test_predict_files_reads_every_awkward_image_and_names_every_broken_one(model, tmp_path,
                                                                           caplog):
    """Phone and scanner files (CMYK JPEG, grayscale and 16-bit PNG, a 1x1 image, an
    EXIF-rotated JPEG) are predicted; random bytes, an empty file and a cut JPEG are skipped,
    each named in a warning. The rotated JPEG is predicted upright: its overlay has the
    upright size and its detections are those of its upright pixels."""
    import sys  # noqa: PLC0415

    import cv2  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "data"))
    from coco_fixtures import jpeg_with_exif  # noqa: PLC0415
    rgb = generate_shapes_example(5, seed=3, image_size=SIZE)["image"]
    folder = tmp_path / "in"
    folder.mkdir()
    cmyk = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(cmyk, "JPEG", quality=95)
    stored = np.ascontiguousarray(np.rot90(rgb[:, :40], k=1))  # upright is 64 x 40
    jpeg = cv2.imencode(".jpg", rgb[..., ::-1])[1].tobytes()
    files = {
        "cmyk.jpg": cmyk.getvalue(),
        "gray.png": cv2.imencode(".png", rgb[..., 0])[1].tobytes(),
        "deep.png": cv2.imencode(".png", rgb[..., ::-1].astype(np.uint16) * 257)[1].tobytes(),
        "dot.png": cv2.imencode(".png", rgb[:1, :1])[1].tobytes(),
        "phone.jpg": jpeg_with_exif(cv2.imencode(".png", stored[..., ::-1])[1].tobytes()
                                    if False else
                                    cv2.imencode(".jpg", stored[..., ::-1],
                                                 [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes(),
                                    6),
        "noise.jpg": np.random.default_rng(1).integers(0, 256, 4000, np.uint8).tobytes(),
        "zero.png": b"",
        "cut.jpg": jpeg[: len(jpeg) // 2],
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    paths = [str(folder / name) for name in files]
    with caplog.at_level(logging.WARNING):
        summary = prediction.predict_files(model, paths, tmp_path / "out", score_threshold=0.0)
    broken = [str(folder / n) for n in ("noise.jpg", "zero.png", "cut.jpg")]
    assert summary["images"] == 5 and summary["skipped_files"] == broken
    warned = " ".join(r.getMessage() for r in caplog.records)
    assert all(path in warned for path in broken)
    overlays = dict(zip([n for n in files if str(folder / n) not in broken],
                        summary["overlays"]))
    assert read_image(overlays["phone.jpg"]).shape[:2] == (64, 40)
    assert read_image(overlays["dot.png"]).shape[:2] == (1, 1)
    assert read_image(overlays["deep.png"]).shape[:2] == (SIZE, SIZE)
    # The rotated file's detections are those of its upright pixels.
    upright = read_image(str(folder / "phone.jpg"))
    assert upright.shape[:2] == (64, 40)
    with open(summary["results_path"]) as f:
        results = [r for r in json.load(f) if r["file_name"] == str(folder / "phone.jpg")]
    expected = model.predict_images([upright], score_threshold=0.0)[0]
    assert len(results) == len(expected["scores"]) > 0
    np.testing.assert_allclose(sorted(r["score"] for r in results),
                               sorted(expected["scores"]), atol=1e-5)


def test_a_10000_pixel_photo_is_predicted_in_bounded_memory(tmp_path):
    """A 10000 x 10000 image (300 MB decoded) through `mrcnn-tf predict`: the peak memory
    grows by less than 4x the decoded image over a 100 x 100 image's run: OpenCV's decoder
    (2x while it decodes), the image's tensor, the overlay, and no float32 copy of the photo
    (measured 3.4x; 7.7x before resizing uint8 directly and blending only masked pixels)."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    import cv2  # noqa: PLC0415

    from helpers import save_small_model  # noqa: PLC0415
    weights = save_small_model(tmp_path / "model.keras")
    side = 10_000
    image = np.zeros((side, side, 3), np.uint8)
    image[2000:6000, 3000:7000] = (200, 60, 40)
    for name, pixels in (("big", image), ("small", image[::100, ::100])):
        (tmp_path / name).mkdir()
        cv2.imwrite(str(tmp_path / name / "photo.png"), pixels)
    del image
    code = ("import resource, sys\nfrom mrcnn_tf.cli.main import run\ntry:\n"
            "    run(['mrcnn-tf', 'predict', '--weights', sys.argv[1], '--inputs', sys.argv[2],"
            " '--out', sys.argv[3]])\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")
    peaks = {}
    for name in ("small", "big"):
        result = subprocess.run(
            [sys.executable, "-c", code, weights, str(tmp_path / name), str(tmp_path / f"o{name}")],
            capture_output=True, text=True, timeout=300,
            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
        assert result.returncode == 0, result.stderr[-3000:]
        peaks[name] = int(result.stdout.split("PEAK")[-1])
        assert os.path.exists(tmp_path / f"o{name}" / "photo.png")
    decoded = side * side * 3
    assert peaks["big"] - peaks["small"] < 4 * decoded, (peaks, decoded)
