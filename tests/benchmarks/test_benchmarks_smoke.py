"""The benchmark harness runs end to end: `python -m benchmarks all --smoke` on a tiny model.

Runs every benchmark once (each in its own process, two at a time) and checks the JSON and the
markdown it writes: every benchmark present and ok (torchvision may be skipped, with its
reason, when torch is absent), every latency, throughput and FLOP count a positive finite
number, a peak memory for every benchmark and every timed row, one row per precision of
inference, stages and train_step with inference's mixed-precision comparison, the markdown
section between its markers with the machine line, and the rest of RESULTS.md left alone. How
fast anything runs, and how closely bf16 agrees with float32, are never asserted.
"""

import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks import report  # noqa: E402
from benchmarks.registry import SUITE_NAMES  # noqa: E402

# Keys holding a measured number that must be a positive finite float wherever they appear.
POSITIVE_KEYS = ("median_ms", "p90_ms", "min_ms", "mean_ms", "images_per_s", "gflop",
                 "achieved_gflops", "images_per_s_median", "images_per_s_p10", "peak_rss_mb",
                 "file_mb", "export_s", "gflop_per_s")
TORCH_PRESENT = (importlib.util.find_spec("torch") is not None
                 and importlib.util.find_spec("torchvision") is not None)
EXISTING_TEXT = "# Measured results\n\nHand-written results above the harness's section.\n"


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """Runs the smoke suite once; returns (process, results dict, markdown text, seconds)."""
    folder = tmp_path_factory.mktemp("bench")
    results_md = folder / "RESULTS.md"
    results_md.write_text(EXISTING_TEXT)
    command = [sys.executable, "-m", "benchmarks", "all", "--smoke",
               "--out", str(folder / "results.json"), "--results_md", str(results_md),
               "--jobs", str(min(2, os.cpu_count() or 1))]
    start = time.perf_counter()
    process = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    seconds = time.perf_counter() - start
    assert process.returncode == 0, f"all --smoke failed:\n{process.stdout}\n{process.stderr}"
    results = json.loads((folder / "results.json").read_text())
    return process, results, results_md.read_text(), seconds


def _numbers(tree, path=""):
    """Yields (path, key, value) for every POSITIVE_KEYS entry anywhere in a JSON tree."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            if key in POSITIVE_KEYS and not isinstance(value, (dict, list)):
                yield f"{path}.{key}", key, value
            yield from _numbers(value, f"{path}.{key}")
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _numbers(value, f"{path}[{i}]")


def _timed_rows(tree):
    """Every dict in the tree that holds a latency (has median_ms)."""
    if isinstance(tree, dict):
        if "median_ms" in tree:
            yield tree
        for value in tree.values():
            yield from _timed_rows(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _timed_rows(value)


def test_every_benchmark_ran(smoke_run):
    _, results, _, seconds = smoke_run
    print(f"smoke run took {seconds:.0f} s")  # shown with -s; never asserted
    assert results["smoke"] is True
    assert list(results["benchmarks"]) == list(SUITE_NAMES)
    for name, entry in results["benchmarks"].items():
        if name == "torchvision" and not TORCH_PRESENT:
            assert entry["status"] == "skipped", entry
            assert "torch" in entry["reason"]
            continue
        assert entry["status"] == "ok", (name, entry.get("error"), entry.get("log_tail"))


def test_numbers_are_positive_and_finite(smoke_run):
    _, results, _, _ = smoke_run
    found = list(_numbers(results["benchmarks"]))
    assert len(found) > 50
    bad = [(path, value) for path, _, value in found
           if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0]
    assert not bad


def test_every_benchmark_and_row_has_its_peak_memory(smoke_run):
    _, results, _, _ = smoke_run
    for name, entry in results["benchmarks"].items():
        if entry["status"] == "skipped":
            continue
        assert entry["peak_rss_mb"] > 0, name
        assert entry["process"]["peak_rss_mb"] > 0, name
        rows = list(_timed_rows(entry["results"]))
        assert rows or name == "flops", f"{name} has no timed rows"  # flops only counts
        for row in rows:
            assert row["peak_rss_mb"] > 0, (name, row)
            assert row["runs"] == results["settings"]["repeats"], (name, row)
            assert row["p90_ms"] >= row["median_ms"] >= row["min_ms"], (name, row)


def test_all_detections_reach_the_mask_head(smoke_run):
    """Score threshold 0: every detection slot is a real detection in every inference row at
    that threshold, and its FLOPs count the mask head on all of them."""
    _, results, _, _ = smoke_run
    detections = results["settings"]["model_facts"]["detections_per_image"]
    checked = 0
    for name in ("inference", "scaling_size", "scaling_batch", "scaling_proposals"):
        for row in results["benchmarks"][name]["results"]["rows"]:
            if row.get("score_threshold", 0.0) == 0.0:
                assert row["min_detections"] == row["max_detections"] == detections, (name, row)
                checked += 1
    assert checked >= 4


def test_inference_is_also_timed_at_a_realistic_detection_count(smoke_run):
    """Each (size, precision, batch) of inference has a row whose raised threshold left at
    most settings' few_detections per image (the batch's image with the most keeps that
    many), with fewer FLOPs than its threshold-0 row."""
    _, results, _, _ = smoke_run
    few = results["settings"]["few_detections"]
    rows = results["benchmarks"]["inference"]["results"]["rows"]
    by_key = {}
    for row in rows:
        by_key.setdefault((row["size"], row["precision"], row["batch"]), {})[
            row["score_threshold"] > 0] = row
    assert by_key
    for key, pair in by_key.items():
        assert set(pair) == {False, True}, key
        realistic, worst = pair[True], pair[False]
        assert 1 <= realistic["max_detections"] <= few, key
        assert realistic["gflop"] < worst["gflop"], key


def test_ceilings_are_measured_per_precision(smoke_run):
    """The ceilings benchmark gives a conv and a matmul GFLOP/s per dtype, and the markdown
    states the inference rows as a share of theirs."""
    _, results, markdown, _ = smoke_run
    ceilings = results["benchmarks"]["ceilings"]["results"]["ceilings"]
    assert set(ceilings) == {"float32", "bfloat16"}
    for kinds in ceilings.values():
        assert kinds["conv3x3"] > 0 and kinds["matmul"] > 0
    assert "of ceiling" in markdown and "### ceilings" in markdown


def test_stages_cover_the_four_parts(smoke_run):
    _, results, _, _ = smoke_run
    rows = results["benchmarks"]["stages"]["results"]["rows"]
    settings = results["settings"]
    expected = {(s, b, p, stage) for s in settings["sizes"] for b in settings["batches"]
                for p in settings["precisions"]["stages"]
                for stage in ("backbone_fpn", "rpn_proposals", "box_detection", "mask_paste")}
    assert {(r["size"], r["batch"], r["precision"], r["stage"]) for r in rows} == expected
    assert len(rows) == len(expected)


@pytest.mark.parametrize("name", ["inference", "stages", "train_step"])
def test_one_row_per_precision(smoke_run, name):
    """Each policy of settings["precisions"] has its rows; a mixed_bfloat16 row says whether
    the CPU has bf16 instructions (it runs either way)."""
    _, results, _, _ = smoke_run
    rows = results["benchmarks"][name]["results"]["rows"]
    wanted = results["settings"]["precisions"][name]
    assert sorted({r["precision"] for r in rows}) == sorted(wanted)
    assert len(rows) % len(wanted) == 0
    bf16 = "avx512_bf16" in results["machine"]["flags"] or "amx_bf16" in results["machine"][
        "flags"]
    for row in rows:
        if row["precision"] == "mixed_bfloat16":
            assert row["bf16_hardware"] is bf16, row


def test_inference_compares_mixed_precision_with_float32(smoke_run):
    """One agreement row per (size, mixed policy), on the largest batch's images, with
    numbers in range; how well they agree is reported, not asserted."""
    _, results, markdown, _ = smoke_run
    data = results["benchmarks"]["inference"]["results"]
    settings = results["settings"]
    mixed = [p for p in settings["precisions"]["inference"] if p != "float32"]
    if not mixed:
        # Only where this machine's CPU kernels cannot compute any mixed policy, said so.
        left_out = settings["precisions_left_out"]
        assert left_out and "Left out: " in markdown, settings
        pytest.skip(f"no mixed precision runs here: {left_out}")
    images = max(settings["batches"])
    assert sorted((r["size"], r["images"], r["precision"]) for r in data["agreement"]) == sorted(
        (s, images, p) for s in settings["sizes"] for p in mixed)
    for row in data["agreement"]:
        assert row["detections"] == images * settings["model_facts"]["detections_per_image"]
        assert 0 <= row["matched"] <= row["detections"]
        for key in ("matched_fraction", "same_box_mask_iou_min", "same_box_mask_iou_median",
                    "same_box_fraction"):
            assert 0.0 <= row[key] <= 1.0, (key, row)
    assert "### inference: mixed precision against float32" in markdown


def test_export_covers_savedmodel_and_each_tflite_precision(smoke_run):
    _, results, _, _ = smoke_run
    rows = results["benchmarks"]["export"]["results"]["rows"]
    measured = {(r["format"], r["precision"]) for r in rows if r["status"] == "ok"}
    assert {("savedmodel", "float32"), ("tflite", "float32"), ("tflite", "float16"),
            ("tflite", "int8_dynamic"), ("tflite", "int8")} <= measured
    for row in rows:
        assert row["status"] in ("ok", "unsupported"), row
        if row["status"] == "unsupported":
            assert row["reason"]
        else:
            assert row["runs"] and row["runtime_process_peak_rss_mb"] > 0


def test_flops_match_the_r50_reference(smoke_run):
    """The analytic R50-FPN count at 512x512 is within 10% of the reference, stage by stage."""
    _, results, _, _ = smoke_run
    rows = results["benchmarks"]["flops"]["results"]["rows"]
    checked = [r for r in rows if r.get("reference_check")]
    assert checked
    for row in checked:
        for stage, check in row["reference_check"].items():
            assert check["within_tolerance"], (row["size"], stage, check)


def test_scaling_records_growth(smoke_run):
    _, results, _, _ = smoke_run
    for name, variable in (("scaling_size", "size"), ("scaling_batch", "batch"),
                           ("scaling_instances", "instances"),
                           ("scaling_proposals", "proposals")):
        data = results["benchmarks"][name]["results"]
        assert data["variable"] == variable
        assert len(data["rows"]) >= 2
        assert isinstance(data["exponent"], float) and math.isfinite(data["exponent"])


def test_torchvision_compares_the_same_stages(smoke_run):
    _, results, _, _ = smoke_run
    entry = results["benchmarks"]["torchvision"]
    if entry["status"] == "skipped":
        pytest.skip(f"torchvision comparison skipped by the harness: {entry['reason']}")
    data = entry["results"]
    assert {r["stage"] for r in data["stages"]} == {
        "backbone_fpn", "rpn_proposals", "box_detection", "mask_paste"}
    assert data["threads"] == results["settings"]["threads"]


def test_markdown_section(smoke_run):
    _, results, markdown, _ = smoke_run
    assert markdown.startswith(EXISTING_TEXT), "the text outside the section was changed"
    assert markdown.count(report.BEGIN) == 1 and markdown.count(report.END) == 1
    section = markdown[markdown.index(report.BEGIN):markdown.index(report.END)]
    machine = results["machine"]
    assert f"Machine: {machine['model']}, {machine['logical_cpus']} logical CPUs" in section
    assert f"tensorflow {results['versions']['tensorflow']}" in section
    assert "--smoke" in section and "SMOKE RUN" in section
    for name in SUITE_NAMES:
        if results["benchmarks"][name]["status"] == "ok":
            assert f"### {name}" in section, name
