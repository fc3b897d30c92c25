"""Training streams (training/input.py): element i of a run is a function of (seed, i) alone,
so a resumed stream continues exactly where a killed one stopped and replicas split each
global batch without changing a single pixel."""

import collections
import os

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_tf.data import shapes, tfrecord_writer
from mrcnn_tf.data.coco import CocoDataset
from mrcnn_tf.data.coco_problems import IMAGE_UNREADABLE
from mrcnn_tf.training import input as training_input

from helpers import small_model_config  # noqa: E402

SIZE = 64
NUM = 10
SEED = 5
# Scale jitter on, so each element's preprocessing depends on its own seed (i) as well.
CONFIG = small_model_config(SIZE, train_min_sizes=(40, 48, 56, 64))


@pytest.fixture(scope="module")
def examples():
    return shapes.make_shapes_arrays(NUM, seed=2, image_size=SIZE)


@pytest.fixture(scope="module")
def source(examples):
    return training_input.IndexedSource.from_examples(examples)


@pytest.fixture(scope="module")
def tfrecord_source(examples, tmp_path_factory):
    prefix = str(tmp_path_factory.mktemp("records") / "train")
    paths = tfrecord_writer.write_tfrecords(examples, prefix, 3, progress=False)
    assert len(paths) == 3 and all(os.path.isfile(p) for p in paths)
    return training_input.TFRecordSource(paths, shuffle_buffer=64)


def element_ids(src, seed, count, first=0, stride=1):
    """[(element index, image_id)] of the first `count` elements."""
    return [(int(i), int(example["image_id"]))
            for i, example in src.elements(seed, first, stride).take(count).as_numpy_iterator()]


def batches(src, global_batch, steps, start_step=0, input_context=None, seed=SEED,
            augment=True):
    stream = training_input.training_stream(src, CONFIG, global_batch, seed, start_step,
                                            input_context, augment=augment)
    return list(stream.take(steps).as_numpy_iterator())


def by_element(batch_list):
    """{element index (sample_seed[1]): {key: array}} over every image of the batches."""
    out = {}
    for batch in batch_list:
        for row in range(len(batch["image_id"])):
            index = int(batch["sample_seed"][row][1])
            assert index not in out, f"element {index} seen twice"
            out[index] = {k: v[row] for k, v in batch.items()}
    return out


def assert_same_batches(got, want):
    assert len(got) == len(want)
    for step, (a, b) in enumerate(zip(got, want)):
        assert sorted(a) == sorted(b)
        for key in b:
            np.testing.assert_array_equal(a[key], b[key], err_msg=f"step {step} {key}")


def assert_same_elements(got, want):
    assert sorted(got) == sorted(want)
    for index in want:
        for key in want[index]:
            np.testing.assert_array_equal(got[index][key], want[index][key],
                                          err_msg=f"element {index} {key}")


def context(pipelines, pipeline_id, replicas):
    return tf.distribute.InputContext(num_input_pipelines=pipelines,
                                      input_pipeline_id=pipeline_id,
                                      num_replicas_in_sync=replicas)


# -- IndexedSource -----------------------------------------------------------------------------

def test_indexed_elements_cover_every_example_once_per_pass(source):
    stream = element_ids(source, SEED, 4 * NUM)
    assert [i for i, _ in stream] == list(range(4 * NUM))
    orders = [[image_id for _, image_id in stream[p * NUM:(p + 1) * NUM]] for p in range(4)]
    for order in orders:
        assert sorted(order) == list(range(NUM))
    # A fresh permutation each pass (4 equal permutations of 10 would be a broken shuffle).
    assert len({tuple(o) for o in orders}) == 4
    assert orders[0] != list(range(NUM))


def test_indexed_elements_depend_only_on_seed(source):
    a = element_ids(source, SEED, 2 * NUM)
    assert element_ids(source, SEED, 2 * NUM) == a
    assert element_ids(source, SEED + 1, 2 * NUM) != a
    # Starting later, or taking every other element, picks the same elements.
    assert element_ids(source, SEED, 7, first=13) == a[13:20]
    assert element_ids(source, SEED, 5, first=1, stride=3) == a[1:16:3]


def test_indexed_source_rejects_empty():
    with pytest.raises(ValueError, match="no training examples"):
        training_input.IndexedSource.from_examples([])


def test_batches_hold_consecutive_elements(source):
    got = batches(source, 4, 3)
    for step, batch in enumerate(got):
        assert batch["images"].shape == (4, CONFIG.max_padded_size, CONFIG.max_padded_size, 3)
        np.testing.assert_array_equal(batch["sample_seed"][:, 0], SEED)
        np.testing.assert_array_equal(batch["sample_seed"][:, 1], np.arange(4) + 4 * step)
    ids = [i for _, i in element_ids(source, SEED, 12)]
    assert np.concatenate([b["image_id"] for b in got]).tolist() == ids
    # Scale jitter is drawn per element: not every image has the same size.
    sizes = {tuple(s) for b in got for s in b["image_shape"]}
    assert len(sizes) > 1


@pytest.mark.parametrize("source_name", ["source", "tfrecord_source"])
@pytest.mark.parametrize("start_step", [1, 3])
def test_resumed_stream_continues_where_the_full_one_is(request, source_name, start_step):
    stream_source = request.getfixturevalue(source_name)
    full = batches(stream_source, 4, start_step + 3)
    resumed = batches(stream_source, 4, 3, start_step=start_step)
    assert_same_batches(resumed, full[start_step:])


def test_two_pipelines_split_each_global_batch(source):
    g, steps = 4, 4
    single = batches(source, g, steps)
    parts = [batches(source, g, steps, input_context=context(2, k, 2)) for k in (0, 1)]
    for step in range(steps):
        halves = [p[step] for p in parts]
        assert all(len(h["image_id"]) == g // 2 for h in halves)
        pairs = lambda b: {(int(i), tuple(s)) for i, s in zip(b["image_id"],  # noqa: E731
                                                             b["sample_seed"].tolist())}
        union = pairs(halves[0]) | pairs(halves[1])
        assert len(union) == g
        assert union == pairs(single[step])
        # Every element processed identically, whichever pipeline had it.
        assert_same_elements(by_element(halves), by_element([single[step]]))


def test_one_pipeline_two_replicas_take_consecutive_halves(source):
    g, steps = 4, 3
    single = batches(source, g, steps)
    per_replica = batches(source, g, 2 * steps, input_context=context(1, 0, 2))
    for step in range(steps):
        pair = per_replica[2 * step:2 * step + 2]
        assert all(len(b["image_id"]) == g // 2 for b in pair)
        assert_same_elements(by_element(pair), by_element([single[step]]))


def test_two_pipelines_four_replicas(source):
    """Two machines with two replicas each: pipeline k's two per-replica batches of a step
    hold the step's elements k, k + 2, ..."""
    g, steps = 8, 2
    single = by_element(batches(source, g, steps))
    parts = [by_element(batches(source, g, 2 * steps, input_context=context(2, k, 4)))
             for k in (0, 1)]
    assert sorted(parts[0]) == list(range(0, g * steps, 2))
    assert sorted(parts[1]) == list(range(1, g * steps, 2))
    assert_same_elements({**parts[0], **parts[1]}, single)


def test_global_batch_must_divide_by_replicas(source):
    with pytest.raises(ValueError, match="--batch_size=3"):
        training_input.training_stream(source, CONFIG, 3, SEED, input_context=context(1, 0, 2))
    with pytest.raises(ValueError, match="--batch_size=6.*4 replicas"):
        training_input.training_stream(source, CONFIG, 6, SEED, input_context=context(2, 1, 4))


def test_describe_names_the_source(source, tfrecord_source):
    assert "10 examples" in training_input.describe(source)
    assert "3 TFRecord files" in training_input.describe(tfrecord_source)


# -- a COCO dataset with a corrupt image ----------------------------------------------------

@pytest.fixture(scope="module")
def corrupt_coco(tmp_path_factory):
    n = 6
    annotations, images_dir = shapes.write_shapes_coco(
        str(tmp_path_factory.mktemp("coco")), n, seed=1, image_size=SIZE)
    dataset = CocoDataset(annotations, images_dir)
    assert len(dataset.image_ids) == n
    bad = dataset.image_ids[2]
    with open(dataset.image_path(bad), "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + b"not an image at all" * 20)
    return dataset, bad


def test_coco_stream_substitutes_the_next_good_image(corrupt_coco):
    dataset, bad = corrupt_coco
    ids = dataset.image_ids
    n = len(ids)
    replacement = ids[ids.index(bad) + 1]
    src = training_input.IndexedSource.from_coco(dataset)
    assert src.num_examples == n
    # One global batch per pass: each step is one whole pass of n elements.
    got = batches(src, n, 3, augment=False)
    for step, batch in enumerate(got):
        assert len(batch["image_id"]) == n
        np.testing.assert_array_equal(batch["sample_seed"][:, 1], np.arange(n) + n * step)
        counts = collections.Counter(batch["image_id"].tolist())
        assert bad not in counts
        assert counts[replacement] == 2
        assert all(counts[i] == 1 for i in ids if i not in (bad, replacement))
    # The skip is counted once (distinct images), however many passes met it.
    assert dataset.skipped[IMAGE_UNREADABLE] == 1
    report = dataset.report()
    assert "1 images skipped" in report and IMAGE_UNREADABLE in report


def test_coco_stream_of_only_bad_images_fails(tmp_path):
    annotations, images_dir = shapes.write_shapes_coco(str(tmp_path), 2, seed=1,
                                                       image_size=SIZE)
    dataset = CocoDataset(annotations, images_dir)
    for image_id in dataset.image_ids:
        with open(dataset.image_path(image_id), "wb") as f:
            f.write(b"garbage")
    src = training_input.IndexedSource.from_coco(dataset)
    with pytest.raises(Exception, match="every image failed to load"):
        element_ids(src, SEED, 1)


# -- TFRecordSource ----------------------------------------------------------------------------

def test_tfrecord_passes_cover_every_record_once(tfrecord_source):
    stream = element_ids(tfrecord_source, SEED, 3 * NUM)
    assert [i for i, _ in stream] == list(range(3 * NUM))
    orders = [[image_id for _, image_id in stream[p * NUM:(p + 1) * NUM]] for p in range(3)]
    for order in orders:
        assert sorted(order) == list(range(NUM))
    assert len({tuple(o) for o in orders}) > 1
    assert element_ids(tfrecord_source, SEED, 3 * NUM) == stream
    assert element_ids(tfrecord_source, SEED + 1, 3 * NUM) != stream


def test_tfrecord_two_pipelines_split_each_global_batch(tfrecord_source):
    g, steps = 4, 4
    single = batches(tfrecord_source, g, steps)
    parts = [batches(tfrecord_source, g, steps, input_context=context(2, k, 2))
             for k in (0, 1)]
    for step in range(steps):
        halves = [p[step] for p in parts]
        want = by_element([single[step]])
        assert sorted(want) == list(range(step * g, (step + 1) * g))
        assert_same_elements(by_element(halves), want)
    # Resumed and split at once.
    resumed = [batches(tfrecord_source, g, 2, start_step=2, input_context=context(2, k, 2))
               for k in (0, 1)]
    assert_same_elements(by_element(resumed[0] + resumed[1]), by_element(single[2:4]))


def test_tfrecord_source_rejects_no_files():
    with pytest.raises(ValueError, match="no TFRecord files"):
        training_input.TFRecordSource([])
