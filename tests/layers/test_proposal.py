"""Tests for ProposalLayer against a NumPy re-implementation of the RPN post-processing."""


import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.config import Config
from mrcnn_tf.layers.proposal import ProposalLayer
from mrcnn_tf.ops import anchors as anchor_ops




from reference import numpy_reference as ref  # noqa: E402

RATIOS = (0.5, 1.0, 2.0)
SHAPES = [(8, 8), (4, 4)]
IMAGE_SHAPE = np.array([[64, 64], [48, 56]], np.int32)


def _inputs(seed=0, batch=2):
    rng = np.random.default_rng(seed)
    anchors = [a.numpy() for a in anchor_ops.pyramid_anchors(
        SHAPES, [8, 16], [16.0, 32.0], RATIOS, offset=0.5)]
    objectness = [rng.normal(0, 2, (batch, h, w, 3)).astype(np.float32) for h, w in SHAPES]
    deltas = [rng.normal(0, 0.3, (batch, h, w, 12)).astype(np.float32) for h, w in SHAPES]
    return objectness, deltas, anchors


def _reference(objectness, deltas, anchors, image_shape, pre_k, post_k, thr, min_size,
               weights=(1.0, 1.0, 1.0, 1.0)):
    """Per image: per level top-k, decode, clip, drop small, NMS per level; then the best
    post_k over all levels by score."""
    out = []
    for b in range(objectness[0].shape[0]):
        found = []
        for logits, d, a in zip(objectness, deltas, anchors):
            scores = logits[b].reshape(-1)
            dl = d[b].reshape(-1, 4)
            top = np.argsort(-scores, kind="stable")[:pre_k]
            boxes = ref.clip_boxes(ref.decode(dl[top], a[top], weights), *image_shape[b])
            s = scores[top]
            keep = ((boxes[:, 2] - boxes[:, 0]) > min_size) & ((boxes[:, 3] - boxes[:, 1])
                                                               > min_size)
            boxes, s = boxes[keep], s[keep]
            for i in ref.greedy_nms(boxes, s, thr):
                found.append((s[i], boxes[i]))
        found.sort(key=lambda t: -t[0])
        out.append(found[:post_k])
    return out


@pytest.mark.parametrize("training", [False, True])
def test_proposals_match_numpy(training):
    objectness, deltas, anchors = _inputs()
    layer = ProposalLayer(pre_nms_topk_train=100, pre_nms_topk_test=60,
                          post_nms_topk_train=50, post_nms_topk_test=40, nms_threshold=0.6,
                          min_box_size=2.0)
    proposals, valid = layer([tf.constant(o) for o in objectness],
                             [tf.constant(d) for d in deltas],
                             [tf.constant(a) for a in anchors], tf.constant(IMAGE_SHAPE),
                             training=training)
    proposals, valid = proposals.numpy(), valid.numpy()
    pre_k, post_k = (100, 50) if training else (60, 40)
    assert proposals.shape == (2, post_k, 4) and valid.shape == (2, post_k)
    expected = _reference(objectness, deltas, anchors, IMAGE_SHAPE, pre_k, post_k, 0.6, 2.0)
    for b in range(2):
        n = len(expected[b])
        assert n > 10
        np.testing.assert_array_equal(valid[b], np.arange(post_k) < n)
        np.testing.assert_allclose(proposals[b, :n], np.stack([e[1] for e in expected[b]]),
                                   atol=1e-3)
        np.testing.assert_array_equal(proposals[b, n:], 0.0)
        # Inside the image (clipped) and not tiny.
        h, w = IMAGE_SHAPE[b]
        p = proposals[b, :n]
        assert np.all(p >= 0) and np.all(p[:, [0, 2]] <= h) and np.all(p[:, [1, 3]] <= w)
        assert np.all(p[:, 2] - p[:, 0] > 2.0) and np.all(p[:, 3] - p[:, 1] > 2.0)


def test_proposals_sorted_by_score():
    # Zero deltas: each proposal is a (clipped) anchor, so its score can be looked up.
    objectness, deltas, anchors = _inputs(seed=1, batch=1)
    deltas = [np.zeros_like(d) for d in deltas]
    layer = ProposalLayer(pre_nms_topk_test=1000, post_nms_topk_test=30, nms_threshold=0.7)
    proposals, valid = layer(objectness, deltas, anchors, tf.constant([[128, 128]]))
    all_anchors = ref.clip_boxes(np.concatenate(anchors), 128, 128)
    all_scores = np.concatenate([o[0].reshape(-1) for o in objectness])
    n = int(valid.numpy().sum())
    assert n == 30
    scores = []
    for box in proposals.numpy()[0, :n]:
        hit = np.flatnonzero(np.all(np.abs(all_anchors - box) < 1e-4, axis=1))
        assert len(hit) == 1
        scores.append(all_scores[hit[0]])
    assert np.all(np.diff(scores) < 0)
    # The single best anchor always survives NMS and comes first.
    assert scores[0] == all_scores.max()


def test_proposal_layer_drops_boxes_outside_the_image():
    # Image 1's valid area is 4 px high: boxes are clipped into it, and the many boxes lying
    # entirely below it become empty and are dropped.
    objectness, deltas, anchors = _inputs(seed=2)
    layer = ProposalLayer(pre_nms_topk_test=1000, post_nms_topk_test=200, nms_threshold=0.99,
                          min_box_size=0.0)
    image_shape = np.array([[64, 64], [4, 64]], np.int32)
    proposals, valid = layer(objectness, deltas, anchors, tf.constant(image_shape))
    p = proposals.numpy()[1][valid.numpy()[1]]
    assert len(p) > 0
    assert np.all(p[:, 2] <= 4.0) and np.all(p[:, 2] - p[:, 0] > 0)
    expected = _reference(objectness, deltas, anchors, image_shape, 1000, 200, 0.99, 0.0)
    assert len(p) == len(expected[1])


def test_proposal_layer_get_config_round_trip():
    layer = ProposalLayer(pre_nms_topk_train=123, pre_nms_topk_test=45, post_nms_topk_train=67,
                          post_nms_topk_test=8, nms_threshold=0.55, min_box_size=1.5,
                          box_weights=(2.0, 2.0, 1.0, 1.0), delta_clip=3.0, name="props")
    config = layer.get_config()
    clone = ProposalLayer.from_config(config)
    assert clone.get_config() == config
    assert clone.name == "props" and clone.pre_nms_topk_test == 45
    assert clone.box_weights == (2.0, 2.0, 1.0, 1.0) and clone.delta_clip == 3.0


def test_proposal_layer_from_model_config():
    config = Config().replace(rpn_pre_nms_topk_test=77, rpn_post_nms_topk_train=66,
                              rpn_nms_threshold=0.65)
    layer = ProposalLayer.from_model_config(config)
    assert layer.pre_nms_topk_test == 77 and layer.post_nms_topk_train == 66
    assert layer.nms_threshold == 0.65
    assert layer.box_weights == tuple(config.rpn_box_weights)
