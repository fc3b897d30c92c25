"""Tests for mrcnn_tf.ops.roi_align and mrcnn_tf.ops.roi_align_builtin against a plain-NumPy
reference of the definition."""

import warnings

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.ops.roi_align import roi_align
from mrcnn_tf.ops.roi_align_builtin import multilevel_roi_align_builtin, roi_align_builtin




from reference import roi_align_reference as _ref  # noqa: E402
from helpers import import_torch_or_skip  # noqa: E402
roi_align_reference = _ref.roi_align_reference

IMPLS = [roi_align, roi_align_builtin]
IMPL_IDS = ["crop_and_resize", "builtin"]
H, W = 7, 9

# Boxes in feature-map pixels (y1, x1, y2, x2) for a 7 x 9 map; divided by spatial_scale
# before use so they are in input pixels.
BOX_CASES = {
    "inside": [1.0, 1.0, 5.0, 6.0],
    "fractional_inside": [0.7, 1.3, 6.2, 8.9],
    "whole_map": [0.0, 0.0, 7.0, 9.0],
    "touching_bottom_right_from_outside": [7.0, 9.0, 10.0, 12.0],
    "touching_top_left_from_outside": [-3.0, -4.0, 0.0, 0.0],
    "crossing_top_left": [-3.0, -2.0, 2.0, 3.0],
    "crossing_bottom_right": [5.0, 7.0, 9.0, 12.0],
    "covering_map_large": [-4.0, -5.0, 13.0, 16.0],
    "outside_top_left": [-5.0, -5.0, -2.0, -2.0],
    "outside_bottom_right": [10.0, 12.0, 14.0, 15.0],
    "outside_above": [-6.0, 2.0, -3.0, 5.0],
    "outside_right": [2.0, 11.0, 5.0, 14.0],
    "tiny": [2.3, 3.1, 2.6, 3.3],
    "zero_size": [3.0, 4.0, 3.0, 4.0],
    "inverted": [4.0, 5.0, 3.0, 4.0],
    "thin_edge_row": [6.6, 0.5, 6.9, 8.5],
}
BOXES = np.array(list(BOX_CASES.values()), np.float32)
BOX_INDICES = np.array([i % 2 for i in range(len(BOXES))], np.int32)


def _features(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# ----------------------------------------------------------------------------- reference
# The reference is checked against closed-form facts first, so the comparisons below rest on
# something other than "two codes written by the same person agree".

def test_reference_constant_map_inside_and_outside():
    feats = np.full((1, 5, 6, 1), 3.0, np.float32)
    inside = roi_align_reference(feats, [[1, 1, 4, 5]], [0], 2, 1.0, 2, True)
    outside = roi_align_reference(feats, [[-9, -9, -4, -4]], [0], 2, 1.0, 2, True)
    np.testing.assert_allclose(inside, 3.0)
    np.testing.assert_allclose(outside, 0.0)


def test_reference_linear_ramp_gives_bin_centres():
    # Bilinear interpolation is exact on a linear function and the samples are symmetric in
    # each bin, so every bin of a box inside the map averages to the bin centre's value.
    ys, xs = np.meshgrid(np.arange(8.0), np.arange(10.0), indexing="ij")
    feats = np.stack([ys, xs], -1)[None].astype(np.float32)
    box = [1.5, 2.0, 6.5, 8.0]  # aligned -> [1.0, 1.5, 6.0, 7.5] on the map
    out = roi_align_reference(feats, [box], [0], (2, 3), 1.0, 2, True)[0]
    centres_y = 1.0 + (np.arange(2) + 0.5) * 5.0 / 2
    centres_x = 1.5 + (np.arange(3) + 0.5) * 6.0 / 3
    np.testing.assert_allclose(out[..., 0], np.repeat(centres_y[:, None], 3, 1), atol=1e-12)
    np.testing.assert_allclose(out[..., 1], np.repeat(centres_x[None, :], 2, 0), atol=1e-12)


def test_reference_edge_rules():
    feats = np.arange(12, dtype=np.float32).reshape(1, 3, 4, 1)
    img = feats[0]
    # y in [-1, 0] reads row 0; y in [H-1, H] reads row H-1; beyond contributes 0.
    assert _ref.bilinear_sample(img, -0.7, 1.0)[0] == img[0, 1, 0]
    assert _ref.bilinear_sample(img, 2.6, 1.0)[0] == img[2, 1, 0]
    assert _ref.bilinear_sample(img, 3.0, 3.9)[0] == img[2, 3, 0]
    assert _ref.bilinear_sample(img, -1.01, 1.0)[0] == 0.0
    assert _ref.bilinear_sample(img, 1.0, 4.01)[0] == 0.0
    assert _ref.bilinear_sample(img, 0.5, 1.25)[0] == pytest.approx(
        0.5 * (img[0, 1, 0] * 0.75 + img[0, 2, 0] * 0.25)
        + 0.5 * (img[1, 1, 0] * 0.75 + img[1, 2, 0] * 0.25))


# ----------------------------------------------------------------- closed form on the TF ops

@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_linear_ramp_and_outside_closed_form(impl, sampling_ratio):
    ys, xs = np.meshgrid(np.arange(8.0), np.arange(10.0), indexing="ij")
    feats = np.stack([ys, xs], -1)[None].astype(np.float32)
    boxes = np.array([[1.5, 2.0, 6.5, 8.0], [-20, -20, -10, -10]], np.float32)
    out = impl(feats, boxes, np.zeros(2, np.int32), (2, 3), 1.0, sampling_ratio, True).numpy()
    centres_y = 1.0 + (np.arange(2) + 0.5) * 2.5
    centres_x = 1.5 + (np.arange(3) + 0.5) * 2.0
    np.testing.assert_allclose(out[0, :, :, 0], np.repeat(centres_y[:, None], 3, 1), atol=1e-5)
    np.testing.assert_allclose(out[0, :, :, 1], np.repeat(centres_x[None, :], 2, 0), atol=1e-5)
    np.testing.assert_array_equal(out[1], 0.0)


# ------------------------------------------------------------------------- vs reference

@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [1, 2, 0])
@pytest.mark.parametrize("spatial_scale", [1.0, 0.25])
def test_matches_reference(impl, aligned, sampling_ratio, spatial_scale):
    feats = _features((2, H, W, 3))
    boxes = BOXES / spatial_scale
    out = impl(feats, boxes, BOX_INDICES, (2, 3), spatial_scale, sampling_ratio, aligned)
    assert out.shape == (len(BOXES), 2, 3, 3)
    assert out.dtype == tf.float32
    expected = roi_align_reference(feats, boxes, BOX_INDICES, (2, 3), spatial_scale,
                                   sampling_ratio, aligned)
    out = out.numpy()
    for i, name in enumerate(BOX_CASES):
        np.testing.assert_allclose(out[i], expected[i], atol=1e-4, err_msg=name)
    # Guard against a vacuous pass: the catalogue has both non-zero and all-zero boxes.
    assert np.abs(expected[0]).max() > 0.1
    assert np.all(expected[list(BOX_CASES).index("outside_top_left")] == 0.0)


@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
@pytest.mark.parametrize("output_size", [1, (4, 1), (1, 5), (3, 2)])
@pytest.mark.parametrize("sampling_ratio", [2, 3, 0])
def test_output_sizes(impl, output_size, sampling_ratio):
    feats = _features((2, H, W, 2), seed=1)
    keep = ["inside", "fractional_inside", "crossing_top_left", "tiny", "thin_edge_row"]
    idx = [list(BOX_CASES).index(k) for k in keep]
    boxes, box_indices = BOXES[idx] * 2.0, BOX_INDICES[idx]
    out = impl(feats, boxes, box_indices, output_size, 0.5, sampling_ratio, True).numpy()
    expected = roi_align_reference(feats, boxes, box_indices, output_size, 0.5,
                                   sampling_ratio, True)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, atol=1e-4)


@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
@pytest.mark.parametrize("map_shape", [(1, 5), (4, 1), (1, 1)])
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_single_row_or_column_maps(impl, map_shape, aligned, sampling_ratio):
    h, w = map_shape
    feats = _features((2, h, w, 2), seed=2)
    boxes = np.array([[0, 0, h, w], [-1.5, -1.5, h + 1.5, w + 1.5], [0.2, 0.3, 0.7, 0.9],
                      [-0.8, w - 0.6, 0.4, w + 0.8], [h + 0.2, 0, h + 3, w]], np.float32)
    box_indices = np.array([0, 1, 1, 0, 1], np.int32)
    out = impl(feats, boxes, box_indices, (2, 3), 1.0, sampling_ratio, aligned).numpy()
    expected = roi_align_reference(feats, boxes, box_indices, (2, 3), 1.0, sampling_ratio,
                                   aligned)
    np.testing.assert_allclose(out, expected, atol=1e-4)
    assert np.abs(expected).max() > 0.01


@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_two_implementations_agree_on_random_boxes(sampling_ratio):
    rng = np.random.default_rng(3)
    feats = rng.normal(size=(3, 13, 17, 8)).astype(np.float32)
    centres = rng.uniform(-4, 20, size=(60, 2)) * 4
    sizes = rng.uniform(0.1, 10, size=(60, 2)) * 4
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], 1).astype(np.float32)
    box_indices = rng.integers(0, 3, size=60).astype(np.int32)
    args = (feats, boxes, box_indices, (7, 5), 0.25, sampling_ratio, True)
    fast = roi_align(*args).numpy()
    builtin = roi_align_builtin(*args).numpy()
    np.testing.assert_allclose(fast, builtin, atol=1e-5)
    assert np.count_nonzero(np.abs(fast) > 1e-3) > fast.size // 10


@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
def test_nan_box_gives_zeros(impl):
    # torchvision treats NaN sample coordinates as outside the map.
    feats = _features((1, 5, 6, 2))
    boxes = np.array([[np.nan, 1, 3, 4], [1, 1, 3, 4]], np.float32)
    for sampling_ratio in (2, 0):
        out = impl(feats, boxes, np.zeros(2, np.int32), 2, 1.0, sampling_ratio).numpy()
        np.testing.assert_array_equal(out[0], 0.0)
        expected = roi_align_reference(feats, boxes[1:], [0], 2, 1.0, sampling_ratio, True)
        np.testing.assert_allclose(out[1:], expected, atol=1e-4)


# ----------------------------------------------------------------- shapes, graphs, dtypes

@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_empty_box_list(impl, sampling_ratio):
    feats = _features((2, H, W, 4))
    out = impl(feats, np.zeros((0, 4), np.float32), np.zeros((0,), np.int32), (3, 2),
               0.5, sampling_ratio)
    assert out.shape == (0, 3, 2, 4)
    assert out.dtype == tf.float32


@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_dynamic_shapes_under_tf_function(impl, sampling_ratio):
    @tf.function(input_signature=[tf.TensorSpec([None, None, None, None], tf.float32),
                                  tf.TensorSpec([None, 4], tf.float32),
                                  tf.TensorSpec([None], tf.int32)])
    def pool(feats, boxes, box_indices):
        out = impl(feats, boxes, box_indices, (2, 3), 0.5, sampling_ratio, True)
        assert out.shape.as_list() == [None, 2, 3, None]  # static shape at trace time
        return out

    cases = [((2, H, W, 3), BOXES * 2, BOX_INDICES),
             ((1, 4, 11, 2), BOXES[:5] * 2, np.zeros(5, np.int32)),
             ((1, 4, 11, 2), np.zeros((0, 4), np.float32), np.zeros(0, np.int32))]
    for shape, boxes, box_indices in cases:
        feats = _features(shape)
        out = pool(feats, boxes, box_indices).numpy()
        expected = roi_align_reference(feats, boxes, box_indices, (2, 3), 0.5,
                                       sampling_ratio, True)
        assert out.shape == expected.shape
        np.testing.assert_allclose(out, expected, atol=1e-4)
    assert len(pool._list_all_concrete_functions()) == 1  # one trace served all shapes


@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
@pytest.mark.parametrize("dtype", [tf.bfloat16, tf.float16, tf.float64])
def test_low_and_high_precision_features(impl, dtype):
    feats = _features((2, H, W, 3))
    feats_cast = tf.cast(feats, dtype)
    out = impl(feats_cast, BOXES, BOX_INDICES, (2, 3), 1.0, 2, True)
    assert out.dtype == dtype
    # Same numbers as float32 on the rounded features, up to the output's own rounding.
    expected = roi_align_reference(tf.cast(feats_cast, tf.float32).numpy(), BOXES,
                                   BOX_INDICES, (2, 3), 1.0, 2, True)
    tol = {tf.bfloat16: 2e-2, tf.float16: 2e-3, tf.float64: 1e-5}[dtype]
    np.testing.assert_allclose(tf.cast(out, tf.float64).numpy(), expected, atol=tol, rtol=tol)


def test_invalid_arguments_raise():
    feats = _features((1, 4, 4, 1))
    boxes, idx = np.zeros((1, 4), np.float32), np.zeros(1, np.int32)
    with pytest.raises(ValueError, match="output_size"):
        roi_align(feats, boxes, idx, (2, 0))
    with pytest.raises(ValueError, match="output_size"):
        roi_align_builtin(feats, boxes, idx, (2, 2, 2))
    with pytest.raises(ValueError, match="sampling_ratio"):
        roi_align(feats, boxes, idx, 2, sampling_ratio=-1)
    with pytest.raises(ValueError, match="features"):
        roi_align_builtin(feats[0], boxes, idx, 2)


# ---------------------------------------------------------------------------- gradients

def _reference_jacobian_vector(feats_shape, boxes, box_indices, upstream, **kwargs):
    """d sum(upstream * roi_align(F)) / dF from the reference: the op is linear in F, so the
    derivative w.r.t. F[i] is the output for the basis map e_i dotted with upstream."""
    grad = np.zeros(feats_shape, np.float64)
    for i in np.ndindex(*feats_shape):
        basis = np.zeros(feats_shape, np.float32)
        basis[i] = 1.0
        grad[i] = np.sum(upstream * roi_align_reference(basis, boxes, box_indices, **kwargs))
    return grad


@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
@pytest.mark.parametrize("sampling_ratio,aligned", [(2, True), (0, True), (1, False)])
def test_gradient_matches_reference_linear_weights(impl, sampling_ratio, aligned):
    shape = (2, 4, 5, 1)
    feats = tf.constant(_features(shape))
    boxes = np.array([[0.3, 0.6, 3.2, 4.1], [-1.2, 2.5, 2.0, 6.5], [1.0, 1.0, 1.4, 1.9]],
                     np.float32)
    box_indices = np.array([0, 1, 1], np.int32)
    upstream = np.random.default_rng(5).normal(size=(3, 2, 2, 1)).astype(np.float32)
    boxes_t = tf.constant(boxes)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([feats, boxes_t])
        out = impl(feats, boxes_t, box_indices, 2, 1.0, sampling_ratio, aligned)
        loss = tf.reduce_sum(out * upstream)
    grad = tape.gradient(loss, feats)
    assert grad is not None
    assert np.abs(grad.numpy()).max() > 0.05
    expected = _reference_jacobian_vector(shape, boxes, box_indices, upstream,
                                          output_size=2, spatial_scale=1.0,
                                          sampling_ratio=sampling_ratio, aligned=aligned)
    np.testing.assert_allclose(grad.numpy(), expected, atol=1e-4)
    # Boxes are constants, as in torchvision.
    assert tape.gradient(loss, boxes_t) is None


@pytest.mark.parametrize("impl", IMPLS, ids=IMPL_IDS)
def test_gradient_through_adaptive_loop_in_graph_mode(impl):
    # sampling_ratio=0 runs a tf.while_loop; its gradient must also work inside tf.function.
    feats = tf.constant(_features((2, 6, 7, 3), seed=8))
    boxes = tf.constant([[0.3, 0.6, 3.2, 4.1], [-1.2, 2.5, 5.0, 6.5]], tf.float32)
    box_indices = tf.constant([0, 1], tf.int32)

    def grad_of_square(f, b, i):
        with tf.GradientTape() as tape:
            tape.watch(f)
            loss = tf.reduce_sum(tf.square(impl(f, b, i, (2, 3), 1.0, 0, True)))
        return tape.gradient(loss, f)

    graph_fn = tf.function(grad_of_square, input_signature=[
        tf.TensorSpec([None, None, None, 3]), tf.TensorSpec([None, 4]),
        tf.TensorSpec([None], tf.int32)])
    eager = grad_of_square(feats, boxes, box_indices).numpy()
    assert np.abs(eager).max() > 0.05
    np.testing.assert_allclose(graph_fn(feats, boxes, box_indices).numpy(), eager, atol=1e-5)


@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_builtin_compiles_with_xla(sampling_ratio):
    # CropAndResize has no XLA kernel; the gather version is the one for jit_compile / TPU.
    feats = _features((2, H, W, 3))
    pool = tf.function(lambda f, b, i: roi_align_builtin(f, b, i, (2, 3), 0.5, sampling_ratio),
                       jit_compile=True)
    out = pool(feats, BOXES * 2, BOX_INDICES).numpy()
    expected = roi_align_reference(feats, BOXES * 2, BOX_INDICES, (2, 3), 0.5, sampling_ratio,
                                   True)
    np.testing.assert_allclose(out, expected, atol=1e-4)


# ------------------------------------------------------------------------------ TFLite

def _tflite_interpreter(model_content):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = Interpreter(model_content=model_content)
    interpreter.allocate_tensors()
    return interpreter


def _builtins_only_converter(impl, sampling_ratio, num_boxes):
    @tf.function(input_signature=[tf.TensorSpec([2, H, W, 3], tf.float32),
                                  tf.TensorSpec([num_boxes, 4], tf.float32),
                                  tf.TensorSpec([num_boxes], tf.int32)])
    def pool(feats, boxes, box_indices):
        return impl(feats, boxes, box_indices, (2, 3), 0.5, sampling_ratio, True)

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [pool.get_concrete_function()], pool)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    return converter, pool


@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_builtin_converts_to_tflite_builtins_and_matches(sampling_ratio):
    num_boxes = len(BOXES)
    converter, pool = _builtins_only_converter(roi_align_builtin, sampling_ratio, num_boxes)
    interpreter = _tflite_interpreter(converter.convert())
    feats = _features((2, H, W, 3), seed=7)
    inputs = {"feats": feats, "boxes": BOXES * 2, "box_indices": BOX_INDICES}
    details = interpreter.get_input_details()
    assert len(details) == 3
    for detail in details:
        name = next(k for k in inputs if k in detail["name"])
        interpreter.set_tensor(detail["index"], inputs[name])
    interpreter.invoke()
    lite_out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    tf_out = pool(**inputs).numpy()
    assert lite_out.shape == tf_out.shape == (num_boxes, 2, 3, 3)
    np.testing.assert_allclose(lite_out, tf_out, atol=1e-4)
    expected = roi_align_reference(feats, BOXES * 2, BOX_INDICES, (2, 3), 0.5,
                                   sampling_ratio, True)
    np.testing.assert_allclose(lite_out, expected, atol=1e-4)


def test_crop_and_resize_version_does_not_convert_with_builtins_only():
    # Documents why roi_align_builtin exists: CropAndResize has no TFLite builtin kernel.
    converter, _ = _builtins_only_converter(roi_align, 2, 4)
    with pytest.raises(Exception, match="CropAndResize"):
        converter.convert()


# ------------------------------------------------------------------------- torchvision

def test_matches_torchvision_if_available():
    torch, torchvision = import_torch_or_skip("the NumPy reference stands in")
    feats = _features((2, H, W, 3))
    for aligned in (True, False):
        for sampling_ratio in (2, 0):
            for spatial_scale in (1.0, 0.25):
                boxes = BOXES / spatial_scale
                rois = np.concatenate([BOX_INDICES[:, None].astype(np.float32),
                                       boxes[:, [1, 0, 3, 2]]], 1)  # (b, x1, y1, x2, y2)
                expected = torchvision.ops.roi_align(
                    torch.from_numpy(feats).permute(0, 3, 1, 2), torch.from_numpy(rois),
                    (2, 3), spatial_scale, sampling_ratio, aligned).permute(0, 2, 3, 1).numpy()
                for impl in IMPLS:
                    out = impl(feats, boxes, BOX_INDICES, (2, 3), spatial_scale,
                               sampling_ratio, aligned).numpy()
                    np.testing.assert_allclose(out, expected, atol=1e-4)


@pytest.mark.parametrize("sampling_ratio, aligned", [(2, True), (0, False)])
def test_multilevel_builtin_equals_each_level_alone(sampling_ratio, aligned):
    """One pass over a table of all levels gives each box what roi_align_builtin gives on its
    own level (different sizes per level, two images, boxes in any order)."""
    rng = np.random.default_rng(7)
    scales = [1 / 4, 1 / 8, 1 / 16]
    maps = [tf.constant(rng.normal(size=(2, 64 // (2 ** i) + i, 48 // (2 ** i), 5)),
                        tf.float32) for i in range(3)]
    n = 12
    y1 = rng.uniform(-8, 200, n)
    x1 = rng.uniform(-8, 150, n)
    boxes = np.stack([y1, x1, y1 + rng.uniform(2, 80, n), x1 + rng.uniform(2, 80, n)], 1)
    boxes = tf.constant(boxes, tf.float32)
    box_indices = tf.constant(rng.integers(0, 2, n), tf.int32)
    levels = tf.constant(rng.integers(0, 3, n), tf.int32)
    out = multilevel_roi_align_builtin(maps, boxes, box_indices, levels, scales,
                                       (3, 4), sampling_ratio, aligned).numpy()
    assert out.shape == (n, 3, 4, 5)
    for k in range(n):
        level = int(levels[k])
        alone = roi_align_builtin(maps[level], boxes[k:k + 1], box_indices[k:k + 1],
                                            (3, 4), scales[level], sampling_ratio, aligned)
        np.testing.assert_allclose(out[k], alone.numpy()[0], rtol=1e-6, atol=1e-6,
                                   err_msg=f"box {k} on level {level}")
