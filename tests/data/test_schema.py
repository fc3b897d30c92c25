"""The example schema (mrcnn_tf.data.schema) is what the readers, the validator and the
TFRecord codec actually produce."""

import numpy as np
import tensorflow as tf

from mrcnn_tf.data import keypoint_shapes, schema, shapes
from mrcnn_tf.data.tfrecord_codec import parse_example, serialize_example
from mrcnn_tf.data.validation import validate_example


def test_signature_lists_the_example_keys_in_order_with_keypoints_last():
    assert tuple(schema.example_signature()) == schema.EXAMPLE_KEYS
    assert tuple(schema.example_signature(3)) == schema.EXAMPLE_KEYS + (schema.KEYPOINTS,)
    assert schema.example_signature(3)[schema.KEYPOINTS].shape.as_list() == [None, 3, 3]
    assert set(schema.REQUIRED_KEYS) < set(schema.EXAMPLE_KEYS)


def test_image_size_fixes_height_and_width_only():
    spec = schema.example_signature(image_size=32)
    assert spec[schema.IMAGE].shape.as_list() == [32, 32, 3]
    assert spec[schema.MASKS].shape.as_list() == [None, 32, 32]
    assert spec[schema.BOXES].shape.as_list() == [None, 4]


def test_validated_synthetic_and_parsed_examples_match_the_signature():
    example = keypoint_shapes.generate_keypoint_example(0, seed=1, image_size=48)
    signature = schema.example_signature(keypoint_shapes.NUM_KEYPOINTS)
    validated = validate_example(example, num_classes=1)
    parsed = parse_example(tf.constant(serialize_example(example)),
                           num_keypoints=keypoint_shapes.NUM_KEYPOINTS)
    for got in (example, validated, parsed):
        assert list(got) == list(signature)
        for key, spec in signature.items():
            value = np.asarray(got[key])
            assert value.dtype == spec.dtype.as_numpy_dtype, key
            assert spec.shape.is_compatible_with(value.shape), key


def test_synthetic_signatures_are_the_schema_one_at_their_size():
    assert shapes.shapes_output_signature(40) == schema.example_signature(image_size=40)
    assert keypoint_shapes.keypoint_output_signature(40) == schema.example_signature(
        keypoint_shapes.NUM_KEYPOINTS, image_size=40)
