"""Property-based tests of the COCO reader (hypothesis): whatever a COCO-format JSON holds in
its images, annotations and categories (random ids, sizes, file names, polygons, RLE, boxes,
missing or mistyped fields), `CocoDataset` raises nothing but its documented errors: a
`DatasetError` for a file it cannot use at all, a `BadSampleError` (strict only) for one bad
sample; otherwise every example it yields is valid (`validate_example`)."""

import json
import math
import pathlib
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from coco_fixtures import pattern_image, write_image  # noqa: E402
from mrcnn_tf.data.coco import CocoDataset  # noqa: E402
from mrcnn_tf.data.coco_problems import BadSampleError, DatasetError  # noqa: E402
from mrcnn_tf.data.validation import validate_example  # noqa: E402

H, W = 12, 16
NUMBERS = st.one_of(st.integers(-5, 40), st.floats(allow_nan=True, allow_infinity=True,
                                                    width=32), st.none(), st.text(max_size=3))
COORDS = st.one_of(st.floats(-5, 40, allow_nan=False), st.floats(-1e12, 1e12))
POLYGON = st.lists(COORDS, min_size=0, max_size=12)
RLE = st.fixed_dictionaries({
    "size": st.one_of(st.just([H, W]), st.lists(st.integers(-1, 20), max_size=3)),
    "counts": st.one_of(st.lists(st.integers(-3, 300), max_size=8), st.text(max_size=12),
                        st.none()),
})
SEGMENTATION = st.one_of(st.lists(POLYGON, max_size=3), RLE, st.none(), st.text(max_size=4),
                         st.integers())
BBOX = st.one_of(st.lists(NUMBERS, max_size=5), st.lists(COORDS, min_size=4, max_size=4),
                 st.none(), st.text(max_size=3))
OPTIONAL = st.one_of(st.none(), st.just("missing"))


def _entry(fields):
    """A dict strategy from {key: strategy}; a value "missing" drops the key."""
    return st.fixed_dictionaries(fields).map(
        lambda d: {k: v for k, v in d.items() if not (isinstance(v, str) and v == "missing")})


IMAGE = _entry({
    "id": st.one_of(st.integers(-2, 4), NUMBERS, st.just("missing")),
    "file_name": st.sampled_from(["a.png", "b.png", "missing.png", "../a.png", "/a.png", "",
                                  "missing"]) | st.integers(),
    "width": st.one_of(st.just(W), NUMBERS, st.just("missing")),
    "height": st.one_of(st.just(H), NUMBERS, st.just("missing")),
})
ANNOTATION = _entry({
    "id": st.one_of(st.integers(-1, 30), NUMBERS, st.just("missing")),
    "image_id": st.one_of(st.integers(-1, 4), NUMBERS, st.just("missing")),
    "category_id": st.one_of(st.sampled_from([1, 2, 99]), NUMBERS, st.just("missing")),
    "iscrowd": st.one_of(st.sampled_from([0, 1]), NUMBERS, st.just("missing")),
    "bbox": st.one_of(BBOX, st.just("missing")),
    "segmentation": st.one_of(SEGMENTATION, st.just("missing")),
    "area": st.one_of(NUMBERS, st.just("missing")),
})
CATEGORIES = st.one_of(
    st.just([{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]),
    st.lists(_entry({"id": st.one_of(st.integers(0, 3), NUMBERS, st.just("missing")),
                     "name": st.one_of(st.sampled_from(["cat", "dog", ""]), st.integers(),
                                       st.just("missing"))}), max_size=3))
DATA = st.fixed_dictionaries({
    "images": st.lists(IMAGE, max_size=4),
    "annotations": st.lists(ANNOTATION, max_size=6),
    "categories": CATEGORIES,
})

# Well-formed images and categories, random annotations: the draws reach the annotation checks
# and the mask decoding instead of stopping at a malformed image list.
GOOD_IMAGES = [{"id": 1, "file_name": "a.png", "width": W, "height": H},
               {"id": 2, "file_name": "b.png", "width": W, "height": H},
               {"id": 3, "file_name": "../a.png", "width": W, "height": H}]
PLAUSIBLE_ANNOTATION = _entry({
    "image_id": st.sampled_from([1, 1, 2, 3, 9]),
    "category_id": st.sampled_from([1, 2, 2, 99]),
    "iscrowd": st.sampled_from([0, 0, 0, 1]),
    "bbox": st.one_of(st.lists(COORDS, min_size=4, max_size=4),
                      st.lists(COORDS, min_size=4, max_size=4), BBOX, st.just("missing")),
    "segmentation": st.one_of(st.lists(st.lists(COORDS, min_size=6, max_size=12), min_size=1,
                                       max_size=2),
                              st.lists(POLYGON, max_size=3), RLE, st.just("missing")),
    "area": st.one_of(st.floats(0, 200), NUMBERS),
})
ANNOTATIONS_ONLY = st.fixed_dictionaries({
    "images": st.just(GOOD_IMAGES),
    # Unique integer ids, as a usable file needs; everything else drawn.
    "annotations": st.lists(PLAUSIBLE_ANNOTATION, max_size=6).map(
        lambda anns: [{**a, "id": i + 1} for i, a in enumerate(anns)]),
    "categories": st.just([{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]),
})


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco_properties")
    images = root / "images"
    for name in ("a.png", "b.png"):
        write_image(images / name, pattern_image(H, W))
    write_image(root / "a.png", pattern_image(H, W))  # what "../a.png" would reach
    return root


def _check(folder, data, strict):
    path = folder / "annotations.json"
    path.write_text(json.dumps(data, allow_nan=True))
    try:
        dataset = CocoDataset(path, folder / "images", strict=strict)
        examples = list(dataset)
    except DatasetError as error:
        assert "\n" not in str(error).strip()
        event("DatasetError")
        return
    except BadSampleError:
        assert strict
        return
    event(f"examples with instances: {sum(len(e['boxes']) > 0 for e in examples) > 0}")
    for example in examples:
        validate_example(example, dataset.label_map.num_classes)
        assert example["image"].shape == (H, W, 3)
        assert np.all(np.isfinite(example["boxes"]))
        assert len(example["boxes"]) == len(example["masks"]) == len(example["class_ids"])
    report = dataset.report()
    assert "\n" not in report


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=DATA)
def test_any_json_gives_valid_examples_or_a_dataset_error(folder, data):
    _check(folder, data, strict=False)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=DATA)
def test_strict_raises_only_the_documented_errors(folder, data):
    _check(folder, data, strict=True)


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=ANNOTATIONS_ONLY)
def test_any_annotations_of_good_images_give_valid_examples(folder, data):
    _check(folder, data, strict=False)


def test_the_strategies_reach_usable_examples(folder):
    """The properties are not vacuous: a well-formed draw gives examples."""
    good = {"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                             "bbox": [2, 2, 6, 5], "segmentation": [[2, 2, 8, 2, 8, 7]],
                             "area": 15.0}],
            "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}
    path = folder / "good.json"
    path.write_text(json.dumps(good))
    examples = list(CocoDataset(path, folder / "images"))
    assert len(examples) == 1 and len(examples[0]["boxes"]) == 1
    assert not math.isnan(float(examples[0]["boxes"][0][0]))


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 9), st.integers(1, 9), st.integers(0, 2 ** 32 - 1))
def test_compressed_counts_are_read_as_pycocotools_writes_them(height, width, seed):
    from pycocotools import mask as mask_util  # noqa: PLC0415

    from mrcnn_tf.data.coco_checks import compressed_rle_counts  # noqa: PLC0415
    mask = np.random.default_rng(seed).random((height, width)) < 0.4
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    runs = compressed_rle_counts(rle["counts"].decode("ascii"))
    assert sum(runs) == height * width
    assert sum(runs[1::2]) == int(mask.sum())  # runs alternate background, foreground


@pytest.mark.parametrize("counts", ["", "0", "2000", "O", "1O1000", "é1", "0" * 3 + "1"])
def test_compressed_counts_that_do_not_cover_the_image_are_refused_undecoded(folder, counts):
    """A run past the mask's end or a malformed string is a bad annotation (skipped, counted;
    strict: BadSampleError): pycocotools' decoder would write outside the mask's buffer."""
    data = {"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                             "segmentation": {"size": [H, W], "counts": counts}}],
            "categories": [{"id": 1, "name": "cat"}]}
    path = folder / "rle.json"
    path.write_text(json.dumps(data))
    dataset = CocoDataset(path, folder / "images")
    assert [len(e["boxes"]) for e in dataset] == [0]
    assert sum(dataset.skipped.values()) == 1
    with pytest.raises(BadSampleError, match="compressed RLE counts"):
        CocoDataset(path, folder / "images", strict=True)


@pytest.mark.parametrize("coordinate", [1e9, -1e9, 1e30])
def test_a_polygon_far_outside_the_image_is_refused_unrasterized(folder, coordinate):
    """pycocotools rasterizes polygons in int32 at 5x and crashes the process on a coordinate
    near 1e9: such a polygon is a bad annotation, never handed to it."""
    data = {"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0,
                             "bbox": [0, 0, 5, 5],
                             "segmentation": [[0, 0, coordinate, 0, 5, 5]]}],
            "categories": [{"id": 1, "name": "cat"}]}
    path = folder / "far.json"
    path.write_text(json.dumps(data))
    with pytest.raises(BadSampleError, match="far outside"):
        CocoDataset(path, folder / "images", strict=True)
    assert [len(e["boxes"]) for e in CocoDataset(path, folder / "images")] == [0]
