"""`python -m benchmarks coco_scale --part padding,train --quick`: the dispatcher and the two
parts that measure batch padding run and report numbers that hang together."""

import pytest

from benchmarks.tasks import coco_scale


@pytest.fixture(scope="module")
def results():
    return coco_scale.run(["padding", "train"], quick=True)


def test_padding_per_mode(results):
    rows = results["padding"]["rows"]
    for jitter, global_batch in [(j, g) for j in (True, False) for g in (2, 16)]:
        by_mode = {r["batch_padding"]: r for r in rows
                   if r["global_batch"] == global_batch and r["scale_jitter"] == jitter}
        assert sorted(by_mode) == ["batch", "buckets", "square"]
        ratio = {mode: row["padded_over_content"] for mode, row in by_mode.items()}
        assert 1.0 <= ratio["batch"] <= ratio["buckets"] < ratio["square"]
        assert ratio["square"] > 1.9  # a 640 x 480 photo fills under half the square
        assert by_mode["square"]["distinct_canvases"] == 1
        assert by_mode["buckets"]["distinct_canvases"] <= 3


def test_training_rows(results):
    rows = {r["batch_padding"]: r for r in results["train"]["rows"]}
    assert sorted(rows) == ["batch", "square"]
    assert all(r["images_per_s"] > 0 for r in rows.values())
    assert rows["batch"]["padded_over_content"] < rows["square"]["padded_over_content"]
    assert results["train"]["speedup_batch_over_square"] > 0


def test_unknown_part_is_refused():
    with pytest.raises(ValueError, match="--part='nope': expected some of padding,"):
        coco_scale.parse_parts("nope")
