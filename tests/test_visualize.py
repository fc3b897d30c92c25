"""Tests for mrcnn_tf.visualize and mrcnn_tf.io_utils."""

import json
import os

import numpy as np
import pytest

from mrcnn_tf import io_utils
from mrcnn_tf.data.images import read_image
from mrcnn_tf.keypoint_spec import COCO_PERSON_SKELETON
from mrcnn_tf.visualize import (
    CHART_COLORS,
    KEYPOINT_SCORE_THRESHOLD,
    captioned_tile,
    class_name,
    color_palette,
    draw_boxes,
    draw_instances,
    draw_keypoints,
    line_chart,
    make_grid,
    mask_to_color,
    stack_rows,
)


def _image(h=64, w=64):
    # A gradient rather than a flat colour, so "unchanged" is checked against varied pixels.
    yy, xx = np.mgrid[:h, :w]
    return np.stack([yy * 3 % 256, xx * 3 % 256, (yy + xx) % 256], -1).astype(np.uint8)


def _one_instance():
    mask = np.zeros([1, 64, 64], bool)
    mask[0, 10:30, 12:28] = True
    boxes = np.asarray([[10, 12, 30, 28]], np.float32)
    return boxes, np.asarray([1], np.int32), np.asarray([0.93], np.float32), mask


# ---------------------------------------------------------------------------------------------
# io_utils
# ---------------------------------------------------------------------------------------------


def test_atomic_write_leaves_nothing_on_error(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError, match="boom"):
        with io_utils.atomic_write(target, "w") as f:
            f.write('{"half": ')
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_atomic_write_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(ValueError):
        with io_utils.atomic_write(target) as f:
            f.write(b"new but incomplete")
            raise ValueError
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_write_success_leaves_no_temp_files(tmp_path):
    target = tmp_path / "metrics.json"
    io_utils.write_json_atomic(target, {"AP": np.float32(0.5), "ids": np.arange(3)})
    io_utils.write_json_atomic(target, {"AP": 0.25})  # overwrite in place
    assert os.listdir(tmp_path) == ["metrics.json"]
    assert json.loads(target.read_text()) == {"AP": 0.25}
    # Permissions follow the umask like a plain open(), not mkstemp's 0600.
    assert target.stat().st_mode & 0o777 == 0o666 & ~io_utils._UMASK


def test_atomic_write_rejects_append_mode(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with io_utils.atomic_write(tmp_path / "x", "ab"):
            pass


def test_png_written_atomically_reads_back_equal(tmp_path):
    image = _image(20, 30)
    path = tmp_path / "viz.png"
    io_utils.write_png_atomic(path, image)
    assert os.listdir(tmp_path) == ["viz.png"]
    back = read_image(path)
    # Equal in RGB order: a missed RGB<->BGR conversion would swap channels 0 and 2.
    np.testing.assert_array_equal(back, image)


def test_png_rejects_float_images(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        io_utils.write_png_atomic(tmp_path / "x.png", np.zeros([4, 4, 3], np.float32))
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# visualize
# ---------------------------------------------------------------------------------------------


def test_color_palette_distinct_and_bright():
    colors = color_palette(20, seed=1)
    assert colors.shape == (20, 3) and colors.dtype == np.uint8
    assert len({tuple(c) for c in colors}) == 20
    assert colors.max(axis=1).min() >= 250  # value 1.0 in HSV: every colour is bright
    np.testing.assert_array_equal(color_palette(5, seed=1), colors[:5])
    assert not np.array_equal(color_palette(5, seed=2), colors[:5])
    assert color_palette(0).shape == (0, 3)


def test_draw_instances_tints_mask_and_leaves_far_pixels():
    image = _image()
    original = image.copy()
    boxes, class_ids, scores, masks = _one_instance()
    out = draw_instances(image, boxes, class_ids, scores, masks, class_names=["bg", "cat"])
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(image, original)  # input not modified
    # Inside the mask, away from the contour and the label: colour changed.
    assert np.abs(out[20:28, 16:24].astype(int) - image[20:28, 16:24]).sum(-1).min() > 0
    # Far from every instance: untouched.
    np.testing.assert_array_equal(out[40:, 40:], image[40:, 40:])
    # The box edge just outside the right of the mask (x2 - 1 = 27) is drawn.
    assert not np.array_equal(out[15:25, 27], image[15:25, 27])


def test_draw_instances_blends_with_alpha():
    image = np.zeros([64, 64, 3], np.uint8)
    masks = np.zeros([1, 64, 64], np.uint8)
    masks[0, 30:60, 30:60] = 1
    out = draw_instances(image, [[30, 30, 60, 60]], [1], masks=masks, alpha=0.5,
                         show_boxes=False)
    color = color_palette(1)[0].astype(int)
    # Below the label (drawn above the box top at y = 30), inside the contour.
    np.testing.assert_allclose(out[45, 45], color * 0.5, atol=1)
    assert out[15:30, 30:60].any()  # the label


def test_draw_instances_zero_instances_returns_unchanged_image():
    image = _image()
    out = draw_instances(image, np.zeros([0, 4]), np.zeros([0], np.int32),
                         np.zeros([0]), np.zeros([0, 64, 64], bool))
    np.testing.assert_array_equal(out, image)
    assert out is not image


def test_draw_instances_score_threshold_skips_low_scores():
    image = _image()
    boxes, class_ids, _, masks = _one_instance()
    out = draw_instances(image, boxes, class_ids, np.asarray([0.2]), masks,
                         score_threshold=0.5)
    np.testing.assert_array_equal(out, image)


def test_draw_instances_box_partly_outside_does_not_crash():
    image = _image()
    boxes = np.asarray([[-20, 50, 30, 90], [60, -5, 200, 10], [1e9, 0, np.inf, 4]], np.float32)
    masks = np.zeros([3, 64, 64], bool)
    masks[0, :30, 50:] = True
    out = draw_instances(image, boxes, [1, 2, 1], [0.9, 0.8, 0.7], masks,
                         class_names=["a", "b"])
    assert out.shape == image.shape
    assert not np.array_equal(out[:30, 50:], image[:30, 50:])


def test_class_name_accepts_both_conventions():
    assert class_name(["background", "cat", "dog"], 2) == "dog"
    assert class_name(["cat", "dog"], 2) == "dog"
    assert class_name(["BG", "cat"], 1) == "cat"
    assert class_name(["cat"], 5) == "class 5"
    assert class_name(None, 3) == "class 3"


def test_draw_boxes_draws_edges_not_interior():
    image = np.zeros([40, 40, 3], np.uint8)
    out = draw_boxes(image, [[5, 5, 15, 25], [-10, -10, 100, 100]], colors=(255, 0, 0))
    assert tuple(out[5, 10]) == (255, 0, 0)     # top edge
    assert tuple(out[14, 10]) == (255, 0, 0)    # bottom edge at y2 - 1
    assert tuple(out[10, 24]) == (255, 0, 0)    # right edge at x2 - 1
    assert tuple(out[10, 10]) == (0, 0, 0)      # interior
    assert out.sum() > 0 and image.sum() == 0
    labelled = draw_boxes(image, [[20, 5, 30, 25]], labels=["roi 3"], thickness=2)
    assert labelled[10:20, 5:25].sum() > 0      # the label sits above the box
    np.testing.assert_array_equal(draw_boxes(image, np.zeros([0, 4])), image)


def test_make_grid_places_tiles():
    tiles = [np.full([4, 5, 3], v, np.uint8) for v in (10, 20, 30)]
    grid = make_grid(tiles, columns=2, padding=1, pad_value=255)
    assert grid.shape == (9, 11, 3)
    assert (grid[:4, :5] == 10).all() and (grid[:4, 6:] == 20).all()
    assert (grid[5:, :5] == 30).all() and (grid[5:, 6:] == 255).all()
    assert (grid[4] == 255).all()
    with pytest.raises(ValueError, match="image 1"):
        make_grid([tiles[0], np.zeros([3, 5, 3], np.uint8)], columns=2)


def test_captioned_tile_centres_the_image_over_its_captions():
    tile = captioned_tile(np.zeros([10, 20, 3], np.uint8), (30, 40), ["first", "second"])
    assert tile.shape == (30 + 2 * 16, 40, 3)
    assert (tile[10:20, 10:30] == 0).all()
    assert (tile[:10] == 255).all() and (tile[20:30] == 255).all()
    assert (tile[30:] < 128).any()  # the captions' text
    with pytest.raises(ValueError, match="larger than the tile"):
        captioned_tile(np.zeros([31, 5, 3], np.uint8), (30, 40))


def test_stack_rows_lays_out_rows_of_any_sizes():
    a, b, c = (np.full(shape, v, np.uint8) for shape, v in
               (((4, 5, 3), 10), ((6, 3, 3), 20), ((2, 12, 3), 30)))
    out = stack_rows([[a, b], [c]], padding=1)
    assert out.shape == (6 + 1 + 2, 12, 3)
    assert (out[:4, :5] == 10).all() and (out[:6, 6:9] == 20).all()
    assert (out[4:6, :5] == 255).all() and (out[7:, :12] == 30).all()


def test_line_chart_draws_each_line_where_its_values_are():
    x = np.linspace(0, 1, 11)
    lines = [{"x": x, "y": np.full(11, 0.5), "label": "half"},
             {"x": x, "y": np.where(x < 0.5, 1.0, np.nan), "label": "top, cut at 0.5"}]
    chart = line_chart("t", lines, x_label="recall", y_label="precision", size=(300, 400))
    assert chart.shape == (300, 400, 3) and chart.dtype == np.uint8
    blue, orange = (np.all(chart == np.array(c, np.uint8), -1) for c in CHART_COLORS[:2])
    # The frame spans rows 44..260 and columns 46..386: y = 0.5 is row 152, y = 1 row 44.
    rows, columns = np.nonzero(blue)
    assert abs(np.median(rows) - 152) <= 2 and columns.max() - columns.min() > 300
    rows, columns = np.nonzero(orange[:, 60:])  # right of the legend's swatches
    assert abs(np.median(rows) - 44) <= 2 and columns.max() + 60 < 46 + 0.55 * 340
    with pytest.raises(ValueError, match="line 0 .* 11 x values and 3 y values"):
        line_chart("t", [{"x": x, "y": [0, 1, 2], "label": "bad"}])
    with pytest.raises(ValueError, match="low < high"):
        line_chart("t", lines, x_range=(1, 0))


def test_line_chart_draws_lines_past_the_palette_grey_and_unnamed():
    x = np.linspace(0, 1, 5)
    lines = [{"x": x, "y": np.full(5, (i + 0.5) / 14), "label": f"L{i}"} for i in range(14)]
    chart = line_chart("t", lines)
    grey = np.all(chart == np.array([200, 200, 200], np.uint8), -1)
    assert grey.sum() > 2 * 300  # the last two lines
    for color in CHART_COLORS:
        assert np.all(chart == np.array(color, np.uint8), -1).sum() > 300


def test_mask_to_color():
    probs = np.linspace(0, 1, 28 * 28, dtype=np.float32).reshape(28, 28)
    heat = mask_to_color(probs, size=(56, 56))
    assert heat.shape == (56, 56, 3) and heat.dtype == np.uint8
    # Jet: low values are blue, high values red (RGB order).
    assert heat[0, 0, 2] > heat[0, 0, 0] and heat[-1, -1, 0] > heat[-1, -1, 2]


# ---------------------------------------------------------------------------------------------
# keypoints
# ---------------------------------------------------------------------------------------------

RED = (255, 0, 0)


def _changed(out, image):
    return np.any(out != image, axis=-1)


def _pose():
    """One instance, K = 3, in continuous pixels: A and B on row 10 (pixel centres 10.5),
    C low-scoring below them; limbs A-B and B-C."""
    keypoints = np.asarray([[[10.5, 10.5, 0.9], [10.5, 50.5, 0.8], [50.5, 30.5, 0.01]]],
                           np.float32)
    return keypoints, (0, 1, 1, 2)


def test_draw_keypoints_draws_dots_and_limbs_only_there():
    image = _image()
    original = image.copy()
    keypoints, skeleton = _pose()
    out = draw_keypoints(image, keypoints, skeleton, colors=RED)
    assert out.shape == image.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(image, original)  # input not modified
    # Continuous (10.5, 10.5) is the centre of pixel (10, 10): the dot is drawn there in the
    # instance colour, and symmetric about it (no half-pixel shift).
    assert tuple(out[10, 10]) == RED and tuple(out[10, 50]) == RED
    dot = _changed(out, image)[5:16, 3:8]  # left half of A's dot, beside the limb
    np.testing.assert_array_equal(dot, dot[::-1])
    assert _changed(out, image)[10, 7] and not _changed(out, image)[10, 4]
    # The limb A-B: every pixel of row 10 between the dots (and their rims), nearly RED
    # (anti-aliased) where the gradient has 30 in the red channel.
    assert (out[10, 14:47, 0] >= 200).all() and (out[10, 14:47, 1:] < 60).all()
    # C scores 0.01 < 0.05: neither C nor the limb B-C is drawn. Nothing changes outside the
    # band around A, B and their limb.
    changed = _changed(out, image)
    band = np.zeros_like(changed)
    band[10 - 4:10 + 5, 10 - 4:50 + 5] = True
    assert changed[band].any() and not changed[~band].any()


def test_draw_keypoints_threshold_is_a_parameter():
    image = _image()
    keypoints, skeleton = _pose()
    assert KEYPOINT_SCORE_THRESHOLD == 0.05
    # Raised above B's score: B and both of its limbs go, A stays.
    out = draw_keypoints(image, keypoints, skeleton, score_threshold=0.85, colors=RED)
    assert tuple(out[10, 10]) == RED
    assert not _changed(out, image)[:, 20:].any()
    # Lowered below C's: C and the limb B-C appear (the limb's middle, (30.5, 40.5)).
    out = draw_keypoints(image, keypoints, skeleton, score_threshold=0.0, colors=RED)
    assert tuple(out[50, 30]) == RED and _changed(out, image)[30, 40]
    # Non-finite or far-away points are skipped, not drawn at a clipped place or crashing.
    bad = keypoints.copy()
    bad[0, 0, :2] = np.nan
    bad[0, 1, :2] = 1e12
    np.testing.assert_array_equal(draw_keypoints(image, bad, skeleton), image)


def test_draw_keypoints_ground_truth_visibility():
    image = np.zeros([64, 64, 3], np.uint8)
    # v = 2 visible, v = 1 occluded, v = 0 not labelled (its coordinates are junk in COCO).
    gt = np.asarray([[[10.5, 10.5, 2], [10.5, 50.5, 1], [50.5, 30.5, 0]]], np.float32)
    # score_threshold is not used with visibility: v = 1 is drawn although 1 < 1.5.
    out = draw_keypoints(image, gt, (0, 1, 1, 2), score_threshold=1.5, visibility=True,
                         colors=RED, radius=4)
    assert tuple(out[10, 10]) == RED                       # visible: a filled dot
    assert tuple(out[10, 54]) == RED                       # occluded: the dot's edge ...
    assert out[10, 50, 0] < 200 and out[10, 50].any()      # ... around a dark hole
    assert not out[40:, :].any()                           # v = 0 and its limb: nothing
    # Without visibility the same array reads as scores: 2 and 1 pass 0.05, 0 does not.
    as_scores = draw_keypoints(image, gt, (0, 1, 1, 2), colors=RED, radius=4)
    assert tuple(as_scores[10, 50]) == RED and not as_scores[40:, :].any()


def test_draw_keypoints_sizes_grow_with_the_image():
    def drawn_pixels(side):
        image = np.zeros([side, side, 3], np.uint8)
        keypoints = np.asarray([[[side / 2, side / 2, 1.0], [side / 2, side / 4, 1.0]]])
        return _changed(draw_keypoints(image, keypoints, (0, 1)), image).sum()

    assert drawn_pixels(640) > 3 * drawn_pixels(64) > 0
    image = np.zeros([64, 64, 3], np.uint8)
    one = np.asarray([[[32.5, 32.5, 1.0]]])
    assert (_changed(draw_keypoints(image, one, radius=6), image).sum()
            > _changed(draw_keypoints(image, one, radius=2), image).sum())


@pytest.mark.parametrize("kwargs, match", [
    (dict(keypoints=np.zeros([3, 3])), r"keypoints must have shape \[n, K, 3\]"),
    (dict(keypoints=np.zeros([1, 3, 2])), r"keypoints must have shape \[n, K, 3\]"),
    (dict(skeleton=(0, 3)), r"skeleton: 3 is not a keypoint index in 0\.\.2"),
    (dict(skeleton=(0, -1)), r"skeleton: -1"),
    (dict(skeleton=(0, 1, 2)), r"skeleton: .*odd number \(3\)"),
    (dict(skeleton=(0, 1.5)), r"skeleton: 1\.5"),
    (dict(colors=np.zeros([2, 3], np.uint8)), r"colors must be one RGB colour or \[1, 3\]"),
    (dict(radius=0), r"radius must be an integer >= 1"),
    (dict(thickness=1.5), r"thickness must be an integer >= 1"),
])
def test_draw_keypoints_rejects_bad_arguments(kwargs, match):
    args = dict(keypoints=_pose()[0], skeleton=(0, 1))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        draw_keypoints(_image(), **args)


def test_draw_keypoints_accepts_pairs_and_no_instances():
    image = _image()
    keypoints, _ = _pose()
    flat = draw_keypoints(image, keypoints, COCO_PERSON_SKELETON[:0] + (0, 1))
    np.testing.assert_array_equal(draw_keypoints(image, keypoints, [[0, 1]]), flat)
    assert _changed(flat, image)[10, 30]
    out = draw_keypoints(image, np.zeros([0, 17, 3]), COCO_PERSON_SKELETON)
    np.testing.assert_array_equal(out, image)
    assert out is not image


def test_draw_instances_draws_poses_without_masks_in_instance_colours():
    image = _image()
    # Instance 1 scores 0.9 and its label fits above its box (rows < 14), so the label covers
    # none of its pose; instance 0 scores 0.2.
    boxes = np.asarray([[44, 4, 60, 60], [14, 4, 40, 60]], np.float32)
    keypoints = np.concatenate([_pose()[0] + [[[40, 0, 0]]], _pose()[0] + [[[12, 0, 0]]]])
    plain = draw_instances(image, boxes, [1, 1], [0.2, 0.9], score_threshold=0.5)
    out = draw_instances(image, boxes, [1, 1], [0.2, 0.9], score_threshold=0.5,
                         keypoints=keypoints, skeleton=(0, 1, 1, 2))
    color = tuple(color_palette(1)[0])  # the first colour: the first instance drawn
    # The kept instance's pose (row 22), in the colour of its box.
    assert tuple(out[22, 10]) == color and tuple(out[22, 50]) == color
    # Only the pose differs from the drawing without keypoints; the instance scoring 0.2
    # (below the detection threshold) gets no pose either (its keypoints are on row 50).
    differs = _changed(out, plain)
    assert differs[22, 14:47].all()
    assert not differs[:18].any() and not differs[27:].any()
    with pytest.raises(ValueError, match="2 boxes but keypoints of 1 instances"):
        draw_instances(image, boxes, [1, 1], keypoints=keypoints[:1])
    with pytest.raises(ValueError, match="skeleton"):
        draw_instances(image, boxes, [1, 1], keypoints=keypoints, skeleton=(0, 9))
