"""The tasks that measure a trained model (`python -m benchmarks precision_agreement`,
`tflite_accuracy`) run end to end on a small untrained model and two held-out images: every
row is there with its APs in COCO's range and its timings positive, and the markdown table
has a line per row. How well anything scores is never asserted (the model is untrained)."""

import sys
import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks import trained_model  # noqa: E402
from benchmarks.tasks import int8_sensitivity, precision_agreement, tflite_accuracy  # noqa: E402,E501

from helpers import save_small_model, skip_unless_cpu_runs  # noqa: E402


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_small_model(tmp_path_factory.mktemp("trained") / "model.keras")


def _check_aps(row):
    for key in trained_model.APS:
        assert -1.0 <= row[key] <= 1.0, (key, row)


def test_precision_agreement_compares_bfloat16_with_float32(weights):
    skip_unless_cpu_runs("mixed_bfloat16")
    results = precision_agreement.run(weights, num_images=2, score_threshold=0.0)
    assert [r["precision"] for r in results["rows"]] == ["float32", "mixed_bfloat16"]
    for row in results["rows"]:
        _check_aps(row)
        assert row["ms_per_image_median"] > 0 and row["detections_per_image"] > 0
    agreement = results["agreement"]
    assert agreement["float32_detections"] > 0
    assert 0 <= agreement["matched"] <= agreement["float32_detections"]
    assert len(precision_agreement.markdown(results)) == 2 + 2 + 1 + 2 + 1


def test_tflite_accuracy_scores_every_quantization(weights):
    results = tflite_accuracy.run(weights, num_images=2, calibration_images=2)
    rows = results["rows"]
    assert [(r["runtime"], r["quantization"]) for r in rows] == [
        ("keras", "float32"), ("ai_edge_litert", "float32"),
        ("ai_edge_litert", "int8_dynamic"), ("ai_edge_litert", "int8")]
    for row in rows:
        _check_aps(row)
    for row in rows[1:]:
        assert row["file_mb"] > 0 and row["ms_per_image_median"] > 0
    # The float32 file scores as Keras does (same detections, to float rounding).
    for key in trained_model.APS:
        assert abs(rows[1][key] - rows[0][key]) < 0.02, key
    assert len(tflite_accuracy.markdown(results)) == 2 + len(rows)


def test_int8_sensitivity_keeps_the_chosen_nodes_float(weights):
    """One calibration, then a file per variant: the calibrated float model scores as Keras
    does, keeping nodes float32 makes the file larger, and every node float32 is the largest."""
    results = int8_sensitivity.run(weights, num_images=2, calibration_images=2)
    rows = {r["variant"]: r for r in results["rows"]}
    assert list(rows)[:3] == ["keras float32", "calibrated float model", "every node int8"]
    assert len(rows) == 2 + len(int8_sensitivity.GROUPS)
    for row in rows.values():
        _check_aps(row)
    for key in trained_model.APS:
        assert abs(rows["calibrated float model"][key] - rows["keras float32"][key]) < 0.02
    total = results["settings"]["int8_nodes"]
    assert rows["every node int8"]["float32_nodes"] == 0
    assert rows["every node float32"]["float32_nodes"] == total > 0
    assert 0 < rows["backbone float32"]["float32_nodes"] < total
    sizes = [rows[v]["file_mb"] for v in ("every node int8", "backbone float32",
                                          "every node float32")]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    assert len(int8_sensitivity.markdown(results)) == 2 + len(rows)


def test_op_profile_sums_op_times_by_type_and_part():
    """`python -m benchmarks op_profile` on a tiny model: the op times by type and by part
    add up to the same total, the convolutions and each head are found by name, and the
    slowest nodes are listed."""
    from benchmarks.tasks import op_profile

    result = op_profile.run(size=64, precision="float32", warmup=1, repeats=1,
                                preset="shapes_tiny")
    total = result["op_ms"]
    assert total > 0 and result["wall_ms"] > 0
    for key in ("by_type", "by_part"):
        assert abs(sum(r["ms"] for r in result[key]) - total) < 0.01 * total + 0.1, key
    types = {r["op"] for r in result["by_type"]}
    assert any(op_profile.CONVOLUTIONS.search(op) for op in types), types
    parts = {r["part"] for r in result["by_part"]}
    assert {"backbone", "fpn", "rpn_head", "box_head", "mask_head"} <= parts, parts
    assert result["top_nodes"] and result["top_nodes"][0]["ms"] > 0
    assert len(op_profile.markdown(result, top=5)) > 10
