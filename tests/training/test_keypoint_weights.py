"""Fine-tuning a keypoint model on another keypoint set (--init_weights --init_new_classes)."""

import numpy as np
import pytest
from helpers import small_model_config

from mrcnn_tf import keypoint_spec
from mrcnn_tf.config import keypoint_fields
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN
from mrcnn_tf.modeling import weights

HEAD = dict(mask_on=False, keypoint_head_conv_dim=16, keypoint_head_num_convs=1)


def _model(num_classes, names, skeleton, sigmas):
    model = MaskRCNN(small_model_config(num_classes=num_classes, **HEAD,
                                        **keypoint_fields(names, skeleton, sigmas)))
    model.build()
    return model


def test_new_keypoint_set_keeps_all_but_the_output_layers(tmp_path):
    source = _model(2, ("left_a", "right_a", "b"), (0, 2), (0.1,) * 3)
    path = str(tmp_path / "source.keras")
    source.save(path)
    fresh = _model(1, keypoint_spec.HOUSE_KEYPOINT_NAMES, keypoint_spec.HOUSE_SKELETON,
                   keypoint_spec.HOUSE_OKS_SIGMAS)
    initial = {v.path: v.numpy() for v in fresh.weights}
    with pytest.raises(ValueError, match="num_keypoints=3"):
        weights.load_weights_into(fresh, path, "--init_weights")
    weights.load_weights_into(fresh, path, "--init_weights", new_classes=True)
    fresh_layers = weights.CLASS_SPECIFIC_LAYERS + weights.KEYPOINT_SPECIFIC_LAYERS
    kept = renewed = 0
    for theirs, ours in zip(source.weights, fresh.weights):
        if any(layer in ours.path for layer in fresh_layers):
            np.testing.assert_array_equal(ours.numpy(), initial[ours.path])
            renewed += 1
        else:
            np.testing.assert_array_equal(ours.numpy(), theirs.numpy())
            kept += 1
    # class logits, box deltas and the heatmap layer (kernel + bias each); the keypoint
    # head's conv came from the weights.
    assert renewed == 6 and kept > 50
    assert any("keypoint_head/conv_fcn1" in v.path for v in fresh.weights)


def test_a_mask_model_is_not_a_keypoint_model(tmp_path):
    source = MaskRCNN(small_model_config())
    source.build()
    path = str(tmp_path / "masks.keras")
    source.save(path)
    target = _model(3, keypoint_spec.HOUSE_KEYPOINT_NAMES, keypoint_spec.HOUSE_SKELETON,
                    keypoint_spec.HOUSE_OKS_SIGMAS)
    with pytest.raises(ValueError, match="mask_on=True"):
        weights.load_weights_into(target, path, "--init_weights", new_classes=True)
