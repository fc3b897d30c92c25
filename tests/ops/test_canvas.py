"""ops/canvas.py: orientation groups that line up with global batches, and the canvas each
batch is padded to."""

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.config import get_config
from mrcnn_tf.ops import canvas
from mrcnn_tf.ops import resize as resize_ops


def _batches(order, groups, group_size, offset):
    """{global batch index: groups of the items it holds} for items starting at stream
    element `offset`."""
    batches = {}
    for k, item in enumerate(order):
        batches.setdefault((offset + k) // group_size, []).append(int(groups[item]))
    return batches


@pytest.mark.parametrize("seed", range(5))
def test_grouped_order_is_a_permutation_mixing_only_the_leftovers(seed):
    rng = np.random.default_rng(seed)
    for _ in range(300):
        n, group_size, offset = int(rng.integers(1, 80)), int(rng.integers(1, 9)), int(
            rng.integers(0, 1000))
        num_groups = int(rng.integers(1, 5))
        groups = rng.integers(0, num_groups, n)
        order = canvas.grouped_order(rng.random(n), groups, group_size, offset, rng.random(n))
        assert order.dtype == np.int32
        assert sorted(order.tolist()) == list(range(n))
        batches = _batches(order, groups, group_size, offset)
        mixed = [b for b, members in batches.items() if len(set(members)) > 1]
        # The leftovers (fewer than G per group) sit in group order in the head and tail, so
        # at most one batch per group holds more than one group.
        assert len(mixed) <= len(set(groups.tolist())), (n, group_size, offset, mixed)
        whole = sum(len(set(m)) == 1 and len(m) == group_size for m in batches.values())
        assert whole >= sum(np.bincount(groups) // group_size) - 1


def test_aspect_groups_tell_photo_shapes_apart():
    heights = [480, 427, 640, 640, 512, 200, 640, 0]
    widths = [640, 640, 480, 427, 512, 640, 200, 10]
    groups = canvas.aspect_groups(heights, widths).tolist()
    assert groups[-1] == -1  # unknown size
    # Strip < 2:3 < 3:4 < square < 4:3 < 3:2 < panorama, each in a group of its own.
    by_ratio = [groups[i] for i in (6, 3, 2, 4, 0, 1, 5)]
    assert by_ratio == sorted(set(by_ratio))


def test_grouped_order_shuffles_the_batches_and_the_items():
    landscape = (np.arange(64) % 2 == 0).astype(int)
    orders = {tuple(canvas.grouped_order(np.random.default_rng(s).random(64), landscape, 4, 0,
                                         np.random.default_rng(100 + s).random(64)))
              for s in range(5)}
    assert len(orders) == 5
    order = canvas.grouped_order(np.random.default_rng(0).random(64), landscape, 4, 0,
                                 np.random.default_rng(1).random(64))
    kinds = [bool(landscape[order[b * 4]]) for b in range(16)]
    # Landscape and portrait batches are interleaved, not 8 of one kind then 8 of the other.
    assert kinds != sorted(kinds) and kinds != sorted(kinds, reverse=True)


def test_grouped_order_on_tensors_matches_numpy():
    rng = np.random.default_rng(3)
    keys, chunk_keys = rng.random(30).astype(np.float32), rng.random(30).astype(np.float32)
    landscape = rng.random(30) < 0.4
    sizes = np.where(landscape[:, None], [[480, 640]], [[640, 480]]).astype(np.int32)
    got = canvas.grouped_order_tf(tf.constant(keys), tf.constant(sizes), 4,
                                  tf.constant(7, tf.int64), tf.constant(chunk_keys))
    groups = canvas.aspect_groups(sizes[:, 0], sizes[:, 1])
    np.testing.assert_array_equal(got.numpy(),
                                  canvas.grouped_order(keys, groups, 4, 7, chunk_keys))


COCO = get_config("coco_r50_fpn", backbone_weights=None)


def test_coco_buckets_are_three_and_hold_every_resized_image():
    buckets = canvas.padding_buckets(COCO)
    assert buckets == ((800, 1344), (1344, 800), (1344, 1344))
    rng = np.random.default_rng(0)
    for _ in range(500):
        h, w = (int(v) for v in rng.integers(16, 4000, size=2))
        new_h, new_w, _ = resize_ops.resize_params(h, w, COCO)
        shape = (int(new_h), int(new_w))
        fitting = [b for b in buckets if b[0] >= shape[0] and b[1] >= shape[1]]
        assert fitting, shape
        # One orientation fits a bucket narrower than the square.
        if h != w:
            assert fitting[0] != (1344, 1344)


def test_jitter_widens_the_short_side_of_the_buckets():
    config = COCO.replace(train_min_sizes=(640, 672, 704, 736, 768, 800, 864))
    assert canvas.padding_buckets(config)[0] == (864, 1344)
    square = COCO.replace(image_min_size=512, image_max_size=512, train_min_sizes=())
    assert canvas.padding_buckets(square) == ((512, 512),)


@pytest.mark.parametrize("mode, want", [
    ("batch", [800, 1088]), ("buckets", [800, 1344]), ("square", [1344, 1344])])
def test_plan_canvas_per_mode(mode, want):
    sizes = tf.constant([[800, 1066], [800, 1067], [750, 1000]])
    np.testing.assert_array_equal(canvas.plan_canvas(sizes, COCO, mode).numpy(), want)


def test_plan_canvas_of_a_mixed_batch_and_of_unknown_sizes():
    mixed = tf.constant([[800, 1066], [1066, 800]])
    np.testing.assert_array_equal(canvas.plan_canvas(mixed, COCO, "batch").numpy(), [1088, 1088])
    np.testing.assert_array_equal(canvas.plan_canvas(mixed, COCO, "buckets").numpy(),
                                  [1344, 1344])
    unknown = tf.constant([[800, 1066], [-1, -1]])
    for mode in canvas.BATCH_PADDINGS:
        np.testing.assert_array_equal(canvas.plan_canvas(unknown, COCO, mode).numpy(),
                                      [1344, 1344])


def test_plan_canvas_refuses_an_unknown_mode():
    with pytest.raises(ValueError, match="batch_padding='tight': expected one of"):
        canvas.plan_canvas(tf.constant([[8, 8]]), COCO, "tight")
