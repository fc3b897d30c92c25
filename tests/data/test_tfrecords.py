"""Tests for TFRecord encoding, writing and reading (mrcnn_tf.data.tfrecord_codec,
tfrecord_writer, tfrecord_reader)."""

import fnmatch
import logging
import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import tensorflow as tf
from pycocotools import mask as mask_util

from mrcnn_tf.config import get_config
from mrcnn_tf.data.pipeline import make_training_dataset, preprocess_for_training
from mrcnn_tf.data.shapes import make_shapes_arrays
from mrcnn_tf.data.schema import FORMAT_VERSION
from mrcnn_tf.data.tfrecord_codec import decodes_to, parse_example, serialize_example
from mrcnn_tf.data.tfrecord_reader import read_label_map, tfrecord_dataset
from mrcnn_tf.data.tfrecord_writer import make_tfrecords, write_tfrecords
from mrcnn_tf.evaluation.coco_eval import LabelMap

TINY = get_config("shapes_tiny")
FIELDS = ("image", "boxes", "class_ids", "masks", "is_crowd", "image_id")
DTYPES = {"image": np.uint8, "boxes": np.float32, "class_ids": np.int32, "masks": np.uint8,
          "is_crowd": np.bool_, "image_id": np.int64}


def _hand_example(height, width, num, image_id, seed=0):
    """Random image with `num` random rectangle instances, some of them crowd."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((num, height, width), np.uint8)
    boxes = np.zeros((num, 4), np.float32)
    for i in range(num):
        y1, x1 = rng.integers(0, height - 2), rng.integers(0, width - 2)
        y2, x2 = rng.integers(y1 + 1, height + 1), rng.integers(x1 + 1, width + 1)
        masks[i, y1:y2, x1:x2] = 1
        masks[i, y1, x1] = 0  # not a plain rectangle: RLE must keep single pixels
        boxes[i] = (y1, x1, y2, x2)
    return {
        "image": rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        "boxes": boxes,
        "class_ids": (np.arange(num) % 3 + 1).astype(np.int32),
        "masks": masks,
        "is_crowd": np.arange(num) % 2 == 1,
        "image_id": np.int64(image_id),
    }


def _to_numpy(example):
    return {k: v.numpy() for k, v in example.items()}


def _assert_examples_equal(got, want):
    assert set(got) == set(FIELDS)
    for key in FIELDS:
        assert got[key].dtype == DTYPES[key], (key, got[key].dtype)
        assert got[key].shape == np.shape(want[key]), (key, got[key].shape)
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def _read_by_id(pattern, **kwargs):
    """All examples of a tfrecord_dataset as {image_id: numpy example}, checking uniqueness."""
    out = {}
    for ex in tfrecord_dataset(pattern, **kwargs):
        ex = _to_numpy(ex)
        image_id = int(ex["image_id"])
        assert image_id not in out, f"image {image_id} read twice"
        out[image_id] = ex
    return out


def _example_ids(paths):
    """Image ids per shard file, read without tfrecord_dataset."""
    return [[int(parse_example(r)["image_id"]) for r in tf.data.TFRecordDataset(p)]
            for p in paths]


@pytest.fixture(scope="module")
def shapes_examples():
    return make_shapes_arrays(10, seed=3, image_size=64)


# -- serialize / parse -----------------------------------------------------------------------

@pytest.mark.parametrize("case", ["shapes", "empty_id0", "nonsquare", "one_pixel_masks"])
def test_round_trip_is_exact(case):
    if case == "shapes":
        examples = make_shapes_arrays(4, seed=1, image_size=96)
    elif case == "empty_id0":
        examples = [_hand_example(40, 70, 0, image_id=0)]
    elif case == "nonsquare":
        examples = [_hand_example(40, 70, 5, image_id=2**40 + 7, seed=5)]  # id beyond int32
    else:
        ex = _hand_example(3, 5, 2, image_id=9)
        ex["masks"][:] = 0
        ex["masks"][0, 2, 4] = 1  # last pixel in row-major and column-major order
        ex["masks"][1, 0, 0] = 1
        examples = [ex]
    for want in examples:
        parsed = parse_example(tf.constant(serialize_example(want)))
        _assert_examples_equal(_to_numpy(parsed), want)


def test_parse_in_dataset_map_keeps_static_ranks(shapes_examples):
    records = [serialize_example(ex) for ex in shapes_examples[:3]]
    ds = tf.data.Dataset.from_tensor_slices(records).map(parse_example)
    # Static ranks when traced, so downstream ops (and the pipeline) can rely on them.
    spec = ds.element_spec
    assert spec["image"].shape.as_list() == [None, None, 3]
    assert spec["masks"].shape.rank == 3 and spec["boxes"].shape.as_list() == [None, 4]
    assert {k: v.dtype for k, v in spec.items()} == {k: tf.as_dtype(d) for k, d in DTYPES.items()}
    for got, want in zip(ds, shapes_examples):
        _assert_examples_equal(_to_numpy(got), want)


def test_masks_are_stored_as_rle(shapes_examples):
    ex = shapes_examples[0]
    proto = tf.train.Example.FromString(serialize_example(ex))
    feature = proto.features.feature
    rles = list(feature["object/mask_rle"].bytes_list.value)
    n, h, w = ex["masks"].shape
    assert len(rles) == n and n > 0
    decoded = mask_util.decode([{"size": [h, w], "counts": c} for c in rles])
    np.testing.assert_array_equal(np.transpose(decoded, (2, 0, 1)), ex["masks"])
    assert feature["format/version"].int64_list.value == [FORMAT_VERSION]
    assert feature["image/format"].bytes_list.value == [b"png"]
    # No field carries anything near a dense mask.
    for key, value in feature.items():
        for lst in (value.bytes_list, value.float_list, value.int64_list):
            assert len(lst.value) < h * w, key


def test_other_format_version_is_refused(shapes_examples):
    proto = tf.train.Example.FromString(serialize_example(shapes_examples[0]))
    proto.features.feature["format/version"].int64_list.value[:] = [FORMAT_VERSION + 1]
    with pytest.raises(tf.errors.InvalidArgumentError, match="format version"):
        parse_example(tf.constant(proto.SerializeToString()))


def test_serialize_rejects_inconsistent_example():
    ex = _hand_example(20, 30, 2, image_id=4)
    ex["masks"] = ex["masks"][:, :10]  # wrong mask size
    with pytest.raises(ValueError, match="image_id 4.*masks"):
        serialize_example(ex)


def test_original_image_bytes_kept_only_when_exact(tmp_path):
    def bgr(image):
        return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)

    png_ex, decoded_ex, lossy_ex = (_hand_example(30, 50, 2, image_id=i, seed=i)
                                    for i in (1, 2, 3))
    # Highest compression: different bytes from the writer's own PNG, same pixels.
    png = cv2.imencode(".png", bgr(png_ex["image"]), [cv2.IMWRITE_PNG_COMPRESSION, 9])[1]
    # A JPEG whose example pixels are what OpenCV decodes (what a dataset reader holds)...
    jpeg = cv2.imencode(".jpg", bgr(decoded_ex["image"]))[1]
    decoded_ex["image"] = cv2.cvtColor(cv2.imdecode(jpeg, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    # ...and one whose example pixels are those before the lossy compression.
    lossy = cv2.imencode(".jpg", bgr(lossy_ex["image"]))[1]
    originals = {1: png.tobytes(), 2: jpeg.tobytes(), 3: lossy.tobytes()}
    assert decodes_to(originals[1], png_ex["image"])
    assert decodes_to(originals[2], decoded_ex["image"])  # TF's decoder agrees with OpenCV's
    assert not decodes_to(originals[3], lossy_ex["image"])
    assert not decodes_to(b"not an image", png_ex["image"])

    examples = [png_ex, decoded_ex, lossy_ex]
    paths = write_tfrecords(examples, str(tmp_path / "d"), 1, progress=False,
                            image_bytes_fn=lambda ex: originals[int(ex["image_id"])])
    stored = {}
    for record in tf.data.TFRecordDataset(paths):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        stored[feature["image/id"].int64_list.value[0]] = (
            feature["image/encoded"].bytes_list.value[0])
    assert stored[1] == originals[1] and stored[2] == originals[2]
    assert stored[3] != originals[3] and stored[3].startswith(b"\x89PNG")
    got = _read_by_id(paths[0], shuffle_files=False)
    for want in examples:  # exact pixels in every case, the lossy original included
        _assert_examples_equal(got[int(want["image_id"])], want)


# -- writing and reading shards --------------------------------------------------------------

def test_write_three_shards_and_read_back(tmp_path, shapes_examples):
    prefix = str(tmp_path / "out" / "train")  # folder "out" does not exist yet
    label_map = LabelMap((0, 7, 3), ("square", "circle", "triangle"))
    examples = shapes_examples + [_hand_example(40, 70, 0, image_id=100)]
    paths = write_tfrecords(iter(examples), prefix, 3, label_map=label_map, progress=2)

    assert paths == [f"{prefix}-{i:05d}-of-00003.tfrecord" for i in range(3)]
    assert sorted(os.listdir(tmp_path / "out")) == sorted(
        [os.path.basename(p) for p in paths] + ["train-label_map.json"])
    # Round-robin: 11 examples -> 4, 4, 3, each example in exactly one shard.
    per_shard = _example_ids(paths)
    assert [len(ids) for ids in per_shard] == [4, 4, 3]
    assert sorted(sum(per_shard, [])) == sorted(int(e["image_id"]) for e in examples)

    got = _read_by_id(f"{prefix}-*-of-*.tfrecord", shuffle_files=False)
    assert set(got) == {int(e["image_id"]) for e in examples}
    for want in examples:
        _assert_examples_equal(got[int(want["image_id"])], want)

    restored = read_label_map(prefix)
    assert restored == label_map and restored.dataset_id(2) == 7


def test_read_label_map_missing_names_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing-label_map.json"):
        read_label_map(str(tmp_path / "nothing"))


def _failing_after(examples, k):
    for i, ex in enumerate(examples):
        if i == k:
            raise RuntimeError("source failed")
        yield ex


def test_failure_midway_leaves_no_shards_and_keeps_earlier_run(tmp_path, shapes_examples):
    prefix = str(tmp_path / "train")
    label_map = LabelMap.from_names(["square", "circle", "triangle"])
    old = write_tfrecords(shapes_examples[:4], prefix, 3, label_map=label_map, progress=False)
    before = sorted(os.listdir(tmp_path))

    with pytest.raises(RuntimeError, match="source failed"):
        write_tfrecords(_failing_after(shapes_examples[4:], 3), prefix, 3,
                        label_map=LabelMap.from_names(["a", "b", "c"]), progress=False)
    with pytest.raises(RuntimeError, match="source failed"):  # another shard count
        write_tfrecords(_failing_after(shapes_examples[4:], 3), prefix, 2, progress=False)

    # No temporary files left, no new shard names, old shards and label map untouched.
    assert sorted(os.listdir(tmp_path)) == before
    assert sorted(tf.io.gfile.glob(f"{prefix}-*-of-*.tfrecord")) == old
    assert set(_read_by_id(f"{prefix}-*-of-*.tfrecord", shuffle_files=False)) == {0, 1, 2, 3}
    assert read_label_map(prefix) == label_map


def test_failure_in_fresh_folder_leaves_it_empty(tmp_path, shapes_examples):
    with pytest.raises(RuntimeError):
        write_tfrecords(_failing_after(shapes_examples, 5), str(tmp_path / "new" / "x"), 3,
                        label_map=LabelMap.from_names(["a", "b", "c"]), progress=False)
    assert os.listdir(tmp_path / "new") == []


def test_killed_writer_leaves_nothing_that_looks_like_a_shard(tmp_path):
    """A hard kill cannot clean up: what it leaves must not match the shard globs."""
    prefix = str(tmp_path / "train")
    script = textwrap.dedent("""
        import os, signal, sys
        from mrcnn_tf.data.shapes import generate_shapes_example
        from mrcnn_tf.data.tfrecord_writer import write_tfrecords
        def examples():
            for i in range(100):
                if i == 7:
                    os.kill(os.getpid(), signal.SIGKILL)
                yield generate_shapes_example(i, image_size=32)
        write_tfrecords(examples(), sys.argv[1], 3, progress=False)
    """)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    result = subprocess.run([sys.executable, "-c", script, prefix], env=env,
                            capture_output=True, timeout=120)
    assert result.returncode == -9, result.stderr.decode()[-2000:]
    left = os.listdir(tmp_path)
    assert left, "expected the killed writer's temporary files to remain"
    for name in left:
        for pattern in ("train-*-of-*.tfrecord", "*.tfrecord", "*-of-*"):
            assert not fnmatch.fnmatch(name, pattern), (name, pattern)
    assert tf.io.gfile.glob(f"{prefix}-*-of-*.tfrecord") == []
    assert tf.io.gfile.glob(f"{tmp_path}/*.tfrecord") == []


def test_rewrite_with_other_shard_count_removes_stale_shards(tmp_path, shapes_examples):
    prefix = str(tmp_path / "train")
    write_tfrecords(shapes_examples, prefix, 4, progress=False)
    new = write_tfrecords(shapes_examples[:5], prefix, 2, progress=False)
    assert sorted(tf.io.gfile.glob(f"{prefix}-*-of-*.tfrecord")) == new
    assert set(_read_by_id(f"{prefix}-*-of-*.tfrecord", shuffle_files=False)) == set(range(5))


def test_unwritable_folder_is_a_clear_error(tmp_path, shapes_examples):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    folder = str(blocker / "sub")
    with pytest.raises(ValueError, match="cannot write TFRecords in folder .*a_file/sub"):
        write_tfrecords(shapes_examples, f"{folder}/train", 2, progress=False)


def test_invalid_examples_are_named_and_nothing_is_written(tmp_path, shapes_examples):
    bad = dict(shapes_examples[1], class_ids=np.full_like(shapes_examples[1]["class_ids"], 4))
    with pytest.raises(ValueError, match=r"example #1 \(image_id 1\).*class_ids.*1\.\.3"):
        write_tfrecords([shapes_examples[0], bad], str(tmp_path / "t"), 2,
                        label_map=LabelMap.from_names(["a", "b", "c"]), progress=False)
    with pytest.raises(ValueError, match=r"example #2 \(image_id 0\).*earlier example"):
        write_tfrecords([shapes_examples[0], shapes_examples[1], shapes_examples[0]],
                        str(tmp_path / "t"), 2, progress=False)
    with pytest.raises(ValueError, match="num_shards"):
        write_tfrecords(shapes_examples, str(tmp_path / "t"), 0, progress=False)
    assert os.listdir(tmp_path) == []


def test_no_match_names_the_pattern(tmp_path):
    pattern = str(tmp_path / "missing-*-of-*.tfrecord")
    with pytest.raises(ValueError, match="missing-\\*-of-\\*.tfrecord"):
        tfrecord_dataset(pattern)


def test_files_are_sharded_per_worker(tmp_path, shapes_examples):
    for num_shards in (4, 3):  # even and uneven split of files between the 2 workers
        prefix = str(tmp_path / f"s{num_shards}")
        write_tfrecords(shapes_examples, prefix, num_shards, progress=False)
        pattern = f"{prefix}-*-of-*.tfrecord"
        per_worker = [
            _read_by_id(pattern, seed=1, input_context=tf.distribute.InputContext(
                num_input_pipelines=2, input_pipeline_id=k, num_replicas_in_sync=2))
            for k in range(2)]
        ids = [set(w) for w in per_worker]
        assert ids[0] and ids[1]
        assert not ids[0] & ids[1]
        assert ids[0] | ids[1] == set(range(len(shapes_examples)))

    write_tfrecords(shapes_examples, str(tmp_path / "one"), 1, progress=False)
    context = tf.distribute.InputContext(num_input_pipelines=2, input_pipeline_id=1)
    with pytest.raises(ValueError, match="1 files but there are 2 input pipelines"):
        tfrecord_dataset(str(tmp_path / "one-*-of-*.tfrecord"), input_context=context)


def test_seeded_reading_is_reproducible(tmp_path, shapes_examples):
    prefix = str(tmp_path / "train")
    write_tfrecords(shapes_examples, prefix, 5, progress=False)
    pattern = f"{prefix}-*-of-*.tfrecord"

    def order(seed):
        return [int(ex["image_id"]) for ex in tfrecord_dataset(pattern, seed=seed)]

    first = order(7)
    assert sorted(first) == list(range(len(shapes_examples)))
    assert order(7) == first
    assert any(order(s) != first for s in (1, 2, 3))  # the seed does shuffle the files


def test_same_training_inputs_as_in_memory_path(tmp_path):
    examples = make_shapes_arrays(4, seed=5, image_size=128) + [
        _hand_example(40, 70, 3, image_id=50), _hand_example(70, 40, 0, image_id=51)]
    prefix = str(tmp_path / "train")
    write_tfrecords(examples, prefix, 2, progress=False)
    from_records = {
        int(ex["image_id"]): _to_numpy(preprocess_for_training(ex, TINY, augment=False))
        for ex in tfrecord_dataset(f"{prefix}-*-of-*.tfrecord", shuffle_files=False)}
    assert len(from_records) == len(examples)
    for ex in examples:
        want = _to_numpy(preprocess_for_training(
            {k: tf.constant(v) for k, v in ex.items()}, TINY, augment=False))
        got = from_records[int(ex["image_id"])]
        assert set(got) == set(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)

    batch = next(iter(make_training_dataset(
        tfrecord_dataset(f"{prefix}-*-of-*.tfrecord", seed=0), TINY, batch_size=4, seed=0)))
    assert batch["images"].shape[0] == 4 and batch["gt_classes"].shape == (4, TINY.max_instances)


def test_masks_take_a_small_fraction_of_their_dense_size(tmp_path, shapes_examples):
    paths = write_tfrecords(shapes_examples, str(tmp_path / "train"), 2, progress=False)
    total_bytes = sum(os.path.getsize(p) for p in paths)
    image_bytes = sum(len(tf.train.Example.FromString(r.numpy()).features
                          .feature["image/encoded"].bytes_list.value[0])
                      for r in tf.data.TFRecordDataset(paths))
    dense_mask_bytes = sum(ex["masks"].size for ex in shapes_examples)
    assert dense_mask_bytes > 0
    # Everything but the image: masks, boxes, ids, TFRecord framing.
    assert total_bytes - image_bytes < dense_mask_bytes / 10


class _ListDataset:
    """The duck type make_tfrecords expects (what CocoDataset provides)."""

    def __init__(self, examples, label_map):
        self._examples = examples
        self.label_map = label_map

    def __len__(self):
        return len(self._examples)

    def __iter__(self):
        return iter(self._examples)


def test_make_tfrecords_writes_shards_label_map_and_summary(tmp_path, shapes_examples, caplog):
    label_map = LabelMap((1, 2, 5), ("square", "circle", "triangle"))
    prefix = str(tmp_path / "coco" / "val")
    with caplog.at_level(logging.INFO):
        paths = make_tfrecords(_ListDataset(shapes_examples, label_map), prefix, 2)
    assert paths == [f"{prefix}-00000-of-00002.tfrecord", f"{prefix}-00001-of-00002.tfrecord"]
    assert read_label_map(prefix) == label_map
    assert len(_read_by_id(f"{prefix}-*-of-*.tfrecord")) == len(shapes_examples)
    summary = [r.getMessage() for r in caplog.records if "make_tfrecords:" in r.getMessage()]
    assert summary and f"{len(shapes_examples)} examples" in summary[0]
    assert f"{len(shapes_examples)}/{len(shapes_examples)} (100.0%)" in caplog.text

    with pytest.raises(ValueError, match="label_map"):
        make_tfrecords(shapes_examples, str(tmp_path / "x"), 1)
