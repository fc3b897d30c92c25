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
from mrcnn_tf.ops import canvas as canvas_ops
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


def _records_of(examples, folder, shards, shuffle_buffer):
    """A TFRecordSource over `examples` written as `shards` shards in `folder`."""
    paths = tfrecord_writer.write_tfrecords(examples, str(folder / "train"), shards,
                                            progress=False)
    assert len(paths) == shards and all(os.path.isfile(p) for p in paths)
    return training_input.TFRecordSource(paths, shuffle_buffer=shuffle_buffer)


@pytest.fixture(scope="module")
def tfrecord_source(examples, tmp_path_factory):
    return _records_of(examples, tmp_path_factory.mktemp("records"), 3, 64)


def element_ids(src, seed, count, first=0, stride=1, group=1):
    """[(element index, image_id)] of the first `count` elements (in batches of `group`)."""
    return [(int(i), int(example["image_id"])) for i, example
            in src.elements(seed, first, stride, group).take(count).as_numpy_iterator()]


def batches(src, global_batch, steps, start_step=0, input_context=None, seed=SEED,
            augment=True, config=CONFIG):
    stream = training_input.training_stream(src, config, global_batch, seed, start_step,
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
    ids = [i for _, i in element_ids(source, SEED, 12, group=4)]
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


# -- batches grouped by aspect ratio, padded to their own canvas -----------------------------

# Shapes images cropped to three sizes: landscape 64 x 128, portrait 128 x 64, square 96 x 96
# (height x width), resized with a shorter side of 48 or 64 and a longer side of at most 128.
MIXED_CONFIG = small_model_config(64, image_max_size=128, train_min_sizes=(48, 64),
                                  mini_mask_size=0)
MIXED_SIZES = [(64, 128)] * 10 + [(128, 64)] * 9 + [(96, 96)] * 5


@pytest.fixture(scope="module")
def mixed_examples():
    squares = shapes.make_shapes_arrays(len(MIXED_SIZES), seed=4, image_size=128,
                                        min_shapes=3, max_shapes=5)
    return [shapes.crop_example(e, h, w) for e, (h, w) in zip(squares, MIXED_SIZES)]


@pytest.fixture(scope="module")
def mixed_source(mixed_examples):
    return training_input.IndexedSource.from_examples(mixed_examples)


@pytest.fixture(scope="module")
def mixed_tfrecords(mixed_examples, tmp_path_factory):
    return _records_of(mixed_examples, tmp_path_factory.mktemp("mixed"), 2, 8)


def _round_up(value, multiple=32):
    return -(-value // multiple) * multiple


@pytest.mark.parametrize("source_name", ["mixed_source", "mixed_tfrecords"])
def test_batches_hold_one_aspect_group_padded_to_their_largest_image(request, source_name):
    src = request.getfixturevalue(source_name)
    g, steps = 4, 12  # two passes of 24 images
    got = batches(src, g, steps, config=MIXED_CONFIG)
    mixed = 0
    padded, content = 0, 0
    for batch in got:
        shapes_ = batch["image_shape"]
        mixed += len(set(canvas_ops.aspect_groups(shapes_[:, 0], shapes_[:, 1]).tolist())) > 1
        canvas = [_round_up(int(shapes_[:, 0].max())), _round_up(int(shapes_[:, 1].max()))]
        assert list(batch["images"].shape[1:3]) == canvas
        assert list(batch["gt_masks"].shape[2:]) == canvas
        for image, (h, w) in zip(batch["images"], shapes_):
            assert not image[h:].any() and not image[:, w:].any()
        padded += g * canvas[0] * canvas[1]
        content += int(np.prod(shapes_, axis=1).sum())
    # Only the groups' leftovers mix: at most one batch per group (3 sizes) and pass.
    assert mixed <= 6
    # Square padding would be 128 x 128 for every image.
    assert padded / content < 0.8 * (steps * g * 128 * 128) / content


@pytest.mark.parametrize("source_name", ["mixed_source", "mixed_tfrecords"])
@pytest.mark.parametrize("padding", ["batch", "buckets"])
def test_grouped_stream_resumes_and_splits_exactly(request, source_name, padding):
    src = request.getfixturevalue(source_name)
    config = MIXED_CONFIG.replace(batch_padding=padding)
    g, steps = 4, 7
    single = batches(src, g, steps, config=config)
    resumed = batches(src, g, steps - 3, start_step=3, config=config)
    assert_same_batches(resumed, single[3:])
    # One machine, two replicas: consecutive halves of each global batch, on its canvas.
    per_replica = batches(src, g, 2 * steps, input_context=context(1, 0, 2), config=config)
    for step in range(steps):
        pair = per_replica[2 * step:2 * step + 2]
        assert pair[0]["images"].shape[1:] == single[step]["images"].shape[1:]
        assert_same_elements(by_element(pair), by_element([single[step]]))
    # Two machines, one replica each: every element with the same pixels and canvas.
    parts = [batches(src, g, steps, input_context=context(2, k, 2), config=config)
             for k in (0, 1)]
    for step in range(steps):
        halves = [p[step] for p in parts]
        assert halves[0]["images"].shape == halves[1]["images"].shape
        assert_same_elements(by_element(halves), by_element([single[step]]))
    if padding == "buckets":
        buckets = {(64, 128), (128, 64), (128, 128)}
        assert {tuple(b["images"].shape[1:3]) for b in single} <= buckets


def test_square_padding_keeps_one_shape(mixed_source):
    config = MIXED_CONFIG.replace(batch_padding="square")
    got = batches(mixed_source, 4, 6, config=config)
    assert {b["images"].shape for b in got} == {(4, 128, 128, 3)}


def test_an_image_larger_than_its_declared_size_is_fitted_inside_the_canvas(mixed_examples):
    """A dataset whose JSON calls every image landscape 64 x 128: the portrait and square ones
    are scaled down into the planned canvas instead of failing the batch."""
    lying = training_input.IndexedSource(
        len(mixed_examples), lambda j: mixed_examples[j], "lying",
        sizes=np.tile([[64, 128]], (len(mixed_examples), 1)))
    for batch in batches(lying, 4, 6, config=MIXED_CONFIG, augment=False):
        canvas = batch["images"].shape[1:3]
        assert tuple(canvas) == (64, 128)
        assert (batch["image_shape"] <= np.asarray(canvas)).all()
        heights = batch["image_shape"][:, 0]
        ratio = batch["scale"][:, 0] * batch["original_shape"][:, 0]
        np.testing.assert_allclose(ratio, heights, rtol=1e-5)


def test_sizes_must_match_the_examples():
    with pytest.raises(ValueError, match=r"sizes of shape \(2, 2\): expected \(3, 2\)"):
        training_input.IndexedSource(3, lambda j: None, "three", sizes=np.zeros((2, 2)))


def test_the_plan_knows_each_image_size_before_reading_it(mixed_source):
    plans = list(training_input.plan_batches(mixed_source, MIXED_CONFIG, 4, SEED)
                 .take(5).as_numpy_iterator())
    for (indices, _, sizes, canvas), batch in zip(plans, batches(mixed_source, 4, 5,
                                                                  config=MIXED_CONFIG)):
        np.testing.assert_array_equal(batch["sample_seed"][:, 1], indices)
        np.testing.assert_array_equal(batch["image_shape"], sizes)
        assert batch["images"].shape[1:3] == tuple(canvas)


# -- more instances than max_instances ---------------------------------------------------------

@pytest.mark.parametrize("source_name", ["source", "tfrecord_source"])
def test_images_beyond_max_instances_are_counted_and_warned_once(request, source_name,
                                                                  examples, caplog):
    """Training keeps the first max_instances of an image; the source's log counts each such
    image once (however many passes meet it), warns for the first only, naming its id, and
    its report tells the count and the instances dropped."""
    import logging  # noqa: PLC0415
    src = request.getfixturevalue(source_name)
    limit = 2
    counts = {int(e["image_id"]): len(e["class_ids"]) for e in examples}
    over = {i: n for i, n in counts.items() if n > limit}
    assert over and len(over) < len(counts)  # some images are cut, some are not
    config = CONFIG.replace(max_instances=limit)
    src.problems.skipped.clear()
    src.problems.instances_dropped = 0
    src.problems._noted.clear()
    with caplog.at_level(logging.WARNING):
        got = batches(src, NUM, 3, config=config)  # three whole passes
    assert all(b["gt_boxes"].shape[1] == limit for b in got)
    assert src.problems.skipped["more instances than max_instances"] == len(over)
    assert src.problems.instances_dropped == sum(n - limit for n in over.values())
    warnings = [r.getMessage() for r in caplog.records if "max_instances" in r.getMessage()]
    assert len(warnings) == 1, warnings
    named = [i for i in over if f"image {i} has {over[i]} instances" in warnings[0]]
    assert len(named) == 1 and "--override max_instances=" in warnings[0]
    report = src.report()
    assert f"{len(over)} images cut to max_instances" in report
    assert f"({sum(n - limit for n in over.values())} instances dropped)" in report


def test_no_image_beyond_max_instances_reports_nothing(examples):
    src = training_input.IndexedSource.from_examples(examples)
    batches(src, NUM, 1)  # CONFIG's max_instances holds every example's instances
    assert src.report().endswith("nothing skipped")
