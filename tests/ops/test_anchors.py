"""Tests for mrcnn_tf.ops.anchors: counts, centres, areas, ratios and flattening order."""

import numpy as np
import pytest

from mrcnn_tf.ops import anchors as anchor_ops
from helpers import import_torch_or_skip  # noqa: E402

RATIOS = (0.5, 1.0, 2.0)


def _centres_sizes(a):
    return ((a[:, 0] + a[:, 2]) / 2, (a[:, 1] + a[:, 3]) / 2,
            a[:, 2] - a[:, 0], a[:, 3] - a[:, 1])


@pytest.mark.parametrize("height,width,stride,size", [(3, 4, 8, 32.0), (2, 5, 16, 64.0)])
def test_level_anchors_geometry_and_order(height, width, stride, size):
    a = anchor_ops.level_anchors(height, width, stride, size, RATIOS).numpy()
    assert a.shape == (height * width * len(RATIOS), 4)
    grid = a.reshape(height, width, len(RATIOS), 4)  # (row, column, ratio) order
    for i in range(height):
        for j in range(width):
            for r, ratio in enumerate(RATIOS):
                y1, x1, y2, x2 = grid[i, j, r]
                h, w = y2 - y1, x2 - x1
                assert (y1 + y2) / 2 == pytest.approx(i * stride, abs=1e-4)
                assert (x1 + x2) / 2 == pytest.approx(j * stride, abs=1e-4)
                assert h * w == pytest.approx(size * size, rel=1e-5)
                assert h / w == pytest.approx(ratio, rel=1e-5)


def test_level_anchors_offset():
    a = anchor_ops.level_anchors(2, 3, 8, 16.0, (1.0,), offset=0.5).numpy()
    cy, cx, h, w = _centres_sizes(a)
    np.testing.assert_allclose(cy, [4, 4, 4, 12, 12, 12])
    np.testing.assert_allclose(cx, [4, 12, 20, 4, 12, 20])
    np.testing.assert_allclose(h, 16.0)
    np.testing.assert_allclose(w, 16.0)


def test_base_anchors_and_round_to_int():
    exact = anchor_ops.base_anchors(32.0, RATIOS).numpy()
    h = 32.0 * np.sqrt(np.array(RATIOS))
    w = 32.0 / np.sqrt(np.array(RATIOS))
    np.testing.assert_allclose(exact, np.stack([-h / 2, -w / 2, h / 2, w / 2], -1), rtol=1e-6)
    assert not np.all(exact == np.round(exact))  # ratio 0.5 has non-integer corners
    rounded = anchor_ops.base_anchors(32.0, RATIOS, round_to_int=True).numpy()
    np.testing.assert_array_equal(rounded, np.round(exact))
    # 32 * sqrt(0.5) / 2 = 11.31 -> 11; 32 / sqrt(0.5) / 2 = 22.63 -> 23.
    np.testing.assert_array_equal(rounded[0], [-11, -23, 11, 23])
    level = anchor_ops.level_anchors(2, 2, 8, 32.0, RATIOS, round_to_int=True).numpy()
    np.testing.assert_array_equal(level, np.round(level))
    np.testing.assert_array_equal(level.reshape(2, 2, 3, 4)[1, 1], rounded + 8.0)


def test_pyramid_anchors_counts():
    shapes = [(8, 8), (4, 4), (2, 2)]
    levels = anchor_ops.pyramid_anchors(shapes, [4, 8, 16], [16.0, 32.0, 64.0], RATIOS)
    assert [int(l.shape[0]) for l in levels] == [h * w * 3 for h, w in shapes]
    for level, (h, w), size, stride in zip(levels, shapes, [16.0, 32.0, 64.0], [4, 8, 16]):
        a = level.numpy()
        _, _, ah, aw = _centres_sizes(a)
        np.testing.assert_allclose(ah * aw, size * size, rtol=1e-5)
        # The last anchors sit on the last location.
        cy, cx, _, _ = _centres_sizes(a[-3:])
        np.testing.assert_allclose(cy, (h - 1) * stride)
        np.testing.assert_allclose(cx, (w - 1) * stride)


def test_level_anchors_take_a_stride_per_axis():
    got = anchor_ops.level_anchors(2, 3, (61, 64), 512.0, [1.0]).numpy()
    centres = (got[:, :2] + got[:, 2:]) / 2
    np.testing.assert_allclose(centres[:, 0], [0, 0, 0, 61, 61, 61])
    np.testing.assert_allclose(centres[:, 1], [0, 64, 128, 0, 64, 128])


def test_torchvision_anchors_match_torchvision_if_available():
    """The torchvision preset's anchors (rounded corners, strides from the grid: 800 // 13 =
    61 on P6) equal torchvision's AnchorGenerator's, in the same order."""
    torch, torchvision = import_torch_or_skip("the comparison with torchvision's anchors")
    AnchorGenerator = torchvision.models.detection.anchor_utils.AnchorGenerator
    ImageList = torchvision.models.detection.image_list.ImageList
    from mrcnn_tf.config import get_config
    config = get_config("torchvision_maskrcnn_r50_fpn")
    height, width = 800, 1088
    shapes = [(200, 272), (100, 136), (50, 68), (25, 34), (13, 17)]
    strides = [(height // h, width // w) for h, w in shapes]
    ours = anchor_ops.pyramid_anchors(shapes, strides, config.anchor_sizes, config.anchor_ratios,
                                   round_to_int=True)
    generator = AnchorGenerator(tuple((int(s),) for s in config.anchor_sizes),
                                (tuple(config.anchor_ratios),) * 5)
    features = [torch.zeros(1, 1, h, w) for h, w in shapes]
    theirs = generator(ImageList(torch.zeros(1, 3, height, width), [(height, width)]),
                       features)[0].numpy()  # (x1, y1, x2, y2), levels concatenated
    ours = np.concatenate([a.numpy() for a in ours])[:, [1, 0, 3, 2]]
    np.testing.assert_array_equal(ours, theirs)
