"""make_tfrecords keeps a COCO dataset's own image files (EXIF orientation included) instead
of re-encoding them as PNG; records of earlier writers (no image/orientation) still read."""

import logging
import pathlib
import sys

import cv2
import numpy as np
import tensorflow as tf

# The fixture helpers sit next to this file; tests/ has no package for tests/data.
sys.path.insert(0, str(pathlib.Path(__file__).parent))
from coco_fixtures import (encode, jpeg_with_exif, pattern_image, png_bytes,  # noqa: E402
                           rect_polygon, write_bytes, write_json)
from mrcnn_tf.data import schema  # noqa: E402
from mrcnn_tf.data.coco import CocoDataset  # noqa: E402
from mrcnn_tf.data.tfrecord_codec import parse_example, serialize_example  # noqa: E402
from mrcnn_tf.data.tfrecord_reader import tfrecord_dataset  # noqa: E402
from mrcnn_tf.data.tfrecord_writer import make_tfrecords  # noqa: E402

H, W = 96, 128


def _photo(seed):
    """A JPEG-like photo: smooth gradients plus noise, so the JPEG is not trivially small."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(0, 12, (H, W, 3))
    return np.clip(pattern_image(H, W, seed).astype(float) + noise, 0, 255).astype(np.uint8)


def _coco_folder(tmp_path, files):
    """images/<name> for each (name, bytes, (width, height)) in `files`, one box annotation
    each, and the annotations JSON; returns (json path, images folder)."""
    images = tmp_path / "images"
    entries, annotations = [], []
    for i, (name, data, (width, height)) in enumerate(files, start=1):
        write_bytes(images / name, data)
        entries.append({"id": i, "file_name": name, "width": width, "height": height})
        annotations.append({"id": i, "image_id": i, "category_id": 1, "iscrowd": 0,
                            "area": 100.0, "bbox": [4, 6, 20, 10],
                            "segmentation": [rect_polygon(4, 6, 24, 16)]})
    coco = {"categories": [{"id": 1, "name": "thing"}], "images": entries,
            "annotations": annotations}
    return write_json(tmp_path / "instances.json", coco), images


def _records(paths):
    """{image id: tf.train.Example features} of the shards."""
    found = {}
    for record in tf.data.TFRecordDataset(paths):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        found[feature[schema.FEATURE_IMAGE_ID].int64_list.value[0]] = feature
    return found


def _parsed(prefix):
    return {int(ex["image_id"]): {k: v.numpy() for k, v in ex.items()}
            for ex in tfrecord_dataset(f"{prefix}-*-of-*.tfrecord", shuffle_files=False)}


def test_jpeg_sources_are_kept_as_they_are_and_the_summary_compares_bytes(tmp_path, caplog):
    jpegs = [encode(_photo(seed), ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90]) for seed in (1, 2, 3)]
    path, images = _coco_folder(tmp_path, [(f"p{i}.jpg", data, (W, H))
                                           for i, data in enumerate(jpegs)])
    dataset = CocoDataset(path, images)
    prefix = str(tmp_path / "kept" / "train")
    with caplog.at_level(logging.INFO):
        paths = make_tfrecords(dataset, prefix, 2, progress=False)
    records = _records(paths)
    for image_id, data in enumerate(jpegs, start=1):
        assert records[image_id][schema.FEATURE_IMAGE_ENCODED].bytes_list.value[0] == data
        assert records[image_id][schema.FEATURE_IMAGE_FORMAT].bytes_list.value[0] == b"jpeg"
    shard_bytes = sum(tf.io.gfile.stat(p).length for p in paths)
    assert shard_bytes <= 1.1 * sum(len(d) for d in jpegs)  # the target for JPEGs
    summary = next(r.getMessage() for r in caplog.records
                   if r.getMessage().startswith("make_tfrecords:"))
    assert "kept for 3" in summary and "x the 3 source image files" in summary
    # The pixels read back are the reader's.
    parsed = _parsed(prefix)
    for example in dataset:
        np.testing.assert_array_equal(parsed[int(example["image_id"])]["image"],
                                      example["image"])

    # Re-encoding instead, as before: several times larger.
    png_prefix = str(tmp_path / "png" / "train")
    png_paths = make_tfrecords(dataset, png_prefix, 2, progress=False, keep_originals=False)
    assert sum(tf.io.gfile.stat(p).length for p in png_paths) > 2 * shard_bytes
    assert all(f[schema.FEATURE_IMAGE_FORMAT].bytes_list.value[0] == b"png"
               for f in _records(png_paths).values())


def test_an_exif_rotated_photo_is_kept_with_its_orientation_and_reads_upright(tmp_path):
    upright = _photo(5)
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # what a phone held sideways stores
    data = jpeg_with_exif(encode(stored, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90]), 6)
    path, images = _coco_folder(tmp_path, [("phone.jpg", data, (W, H))])
    dataset = CocoDataset(path, images)
    prefix = str(tmp_path / "train")
    feature = _records(make_tfrecords(dataset, prefix, 1, progress=False))[1]
    assert feature[schema.FEATURE_IMAGE_ENCODED].bytes_list.value[0] == data
    assert feature[schema.FEATURE_IMAGE_ORIENTATION].int64_list.value == [6]
    assert (feature[schema.FEATURE_IMAGE_HEIGHT].int64_list.value[0],
            feature[schema.FEATURE_IMAGE_WIDTH].int64_list.value[0]) == (H, W)
    example = next(iter(dataset))
    parsed = _parsed(prefix)[1]
    assert parsed["image"].shape == (H, W, 3)
    np.testing.assert_array_equal(parsed["image"], example["image"])
    np.testing.assert_array_equal(parsed["masks"], example["masks"])


def test_a_source_that_does_not_decode_to_the_readers_pixels_is_stored_as_png(tmp_path):
    """A 16-bit PNG: the reader scales it to 8 bits its own way, so the file is not kept."""
    samples = (np.arange(H * W * 3, dtype=np.uint32).reshape(H, W, 3) * 37 % 65536)
    data = png_bytes(samples.astype(np.uint16), color_type=2, bit_depth=16)
    path, images = _coco_folder(tmp_path, [("deep.png", data, (W, H))])
    dataset = CocoDataset(path, images)
    prefix = str(tmp_path / "train")
    feature = _records(make_tfrecords(dataset, prefix, 1, progress=False))[1]
    assert feature[schema.FEATURE_IMAGE_ENCODED].bytes_list.value[0] != data
    np.testing.assert_array_equal(_parsed(prefix)[1]["image"], next(iter(dataset))["image"])


def test_records_without_an_orientation_read_as_before():
    """Records of writers before image/orientation existed: stored upright, read as is."""
    image = _photo(7)
    example = {"image": image, "boxes": np.zeros((0, 4), np.float32),
               "class_ids": np.zeros((0,), np.int32), "masks": np.zeros((0, H, W), np.uint8),
               "image_id": 3}
    proto = tf.train.Example.FromString(serialize_example(example))
    del proto.features.feature[schema.FEATURE_IMAGE_ORIENTATION]
    parsed = parse_example(tf.constant(proto.SerializeToString()))
    np.testing.assert_array_equal(parsed["image"].numpy(), image)


def test_a_corrupt_jpeg_is_skipped_counted_and_named_and_training_reads_the_rest(
        tmp_path, caplog):
    """A truncated JPEG among kept originals fails at conversion the way the reader fails on
    it (skipped, counted, its file named) and never reaches the records a run trains on."""
    from mrcnn_tf.config import get_config  # noqa: PLC0415
    from mrcnn_tf.data.coco_problems import IMAGE_UNREADABLE  # noqa: PLC0415
    from mrcnn_tf.training.input import TFRecordSource, training_stream  # noqa: PLC0415

    jpegs = [encode(_photo(seed), ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 90]) for seed in (1, 2, 3)]
    files = [(f"p{i}.jpg", data, (W, H)) for i, data in enumerate(jpegs)]
    files.append(("cut.jpg", jpegs[0][: len(jpegs[0]) // 2], (W, H)))
    path, images = _coco_folder(tmp_path, files)
    dataset = CocoDataset(path, images)
    prefix = str(tmp_path / "records" / "train")
    with caplog.at_level(logging.WARNING):
        paths = make_tfrecords(dataset, prefix, 2, progress=False)
    records = _records(paths)
    assert sorted(records) == [1, 2, 3]
    assert all(r[schema.FEATURE_IMAGE_FORMAT].bytes_list.value[0] == b"jpeg"
               for r in records.values())
    assert dataset.skipped[IMAGE_UNREADABLE] == 1
    assert any("cut.jpg" in r.getMessage() for r in caplog.records)
    config = get_config("shapes_tiny", image_min_size=64, image_max_size=128)
    batch = next(iter(training_stream(TFRecordSource(paths), config, 2, seed=0)))
    assert set(batch["image_id"].numpy().tolist()) <= {1, 2, 3}
