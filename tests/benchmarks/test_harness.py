"""The harness's own pieces, without running a model: statistics, the markdown section swap,
flag errors, and a crashing benchmark process reported as an error."""

import ast
import json
import mmap
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks import cli, machine, memory, report, results_files, suite_settings  # noqa: E402
from benchmarks import timing, worker  # noqa: E402


def test_summarize_median_and_p90():
    stats = timing.summarize([0.004, 0.001, 0.003, 0.002, 0.010])
    assert stats["median_ms"] == pytest.approx(3.0)
    # Linear interpolation between the 4th and 5th of 5 sorted values: 4 + 0.6 * (10 - 4).
    assert stats["p90_ms"] == pytest.approx(7.6)
    assert stats["min_ms"] == pytest.approx(1.0) and stats["runs"] == 5
    assert stats["times_ms"] == pytest.approx([4.0, 1.0, 3.0, 2.0, 10.0])


def test_growth_exponent():
    assert timing.growth_exponent([1, 2, 4], [3.0, 12.0, 48.0]) == pytest.approx(2.0)
    assert timing.growth_exponent([1], [3.0]) is None


def test_replace_section_keeps_the_rest():
    section = f"{report.BEGIN}\nnew\n{report.END}\n"
    document = f"# Title\n\nbefore\n\n{report.BEGIN}\nold\n{report.END}\n\nafter\n"
    replaced = report.replace_section(document, section)
    assert replaced == f"# Title\n\nbefore\n\n{report.BEGIN}\nnew\n{report.END}\n\nafter\n"
    appended = report.replace_section("# Title\n", section)
    assert appended == "# Title\n\n" + section
    with pytest.raises(ValueError, match="markers"):
        report.replace_section(f"{report.END}\n{report.BEGIN}\n", section)


def test_peak_memory_context_records_a_peak():
    # An anonymous mapping of its own: fresh pages the kernel must fault in. A bytearray could
    # be carved from heap pages a long-lived process (a test worker at 5 GB) already holds
    # resident, and then the peak would not move.
    block = mmap.mmap(-1, 64 << 20)
    try:
        with memory.PeakMemory() as peak:
            for offset in range(0, len(block), mmap.PAGESIZE):  # touch every page
                block[offset] = 1
    finally:
        block.close()
    assert peak.peak_mb >= peak.start_mb > 0
    if peak.peak_is_reset:
        assert peak.peak_mb - peak.start_mb > 32
    # The kernel's RSS counters are per-thread caches, exact only to a few hundred kB.
    assert memory.process_peak_rss_mb() >= peak.peak_mb - 1


@pytest.mark.parametrize("flags, expected", [
    (["--only", "inference,nope"], "--only='inference,nope': unknown benchmark(s) ['nope']"),
    (["--repeats", "0"], "--repeats=0: expected an integer >= 1"),
    (["--sizes", "512,x"], "--sizes='512,x': expected comma-separated positive integers"),
    (["--precisions", "float32,bf16"], "--precisions='float32,bf16': expected comma-separated "
                                       "Keras dtype policies"),
])
def test_bad_flags_exit_2_with_one_line(flags, expected):
    process = subprocess.run([sys.executable, "-m", "benchmarks", "all", *flags], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
    assert process.returncode == 2
    assert expected in process.stderr


def test_a_crashing_benchmark_is_reported(tmp_path):
    """A process that dies without writing its result comes back as an error with its log."""
    result = worker.run_worker("no_such_benchmark", {"threads": 2}, str(tmp_path), 60)
    assert result["status"] == "error"
    assert "without writing a result" in result["error"]
    assert "unknown benchmark 'no_such_benchmark'" in result["log_tail"]
    assert result["process"]["returncode"] != 0
    assert result["process"]["peak_rss_mb"] > 0
    assert json.loads((tmp_path / "no_such_benchmark.spec.json").read_text()) == {"threads": 2}


def test_torchvision_is_skipped_with_its_reason_without_torch(tmp_path):
    """Without torch the comparison reports "skipped" and why, instead of failing."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "torch.py").write_text("raise ImportError('No module named torch (test shim)')\n")
    result = worker.run_worker("torchvision", {"threads": 2}, str(tmp_path), 60,
                                extra_env={"PYTHONPATH": str(shim)})
    assert result["status"] == "skipped", result
    assert "torch / torchvision are not installed" in result["reason"]
    assert "test shim" in result["reason"]


@pytest.mark.parametrize("flags, expected_md", [
    (["--smoke"], "next to out"),
    (["--out", "/tmp/elsewhere/results.json"], "/tmp/elsewhere/RESULTS.md"),
    (["--smoke", "--out", "/tmp/s/results.json", "--results_md", "/tmp/s/R.md"], "/tmp/s/R.md"),
    ([], "checked in"),
])
def test_only_a_plain_full_run_defaults_to_the_checked_in_files(flags, expected_md,
                                                                 tmp_path, monkeypatch):
    import tempfile  # noqa: PLC0415

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # a smoke run's temporary folder
    out, results_md = results_files.default_paths(_suite_args(flags))
    if expected_md == "checked in":
        assert (out, results_md) == (results_files.DEFAULT_OUT, results_files.DEFAULT_RESULTS_MD)
        return
    assert out != results_files.DEFAULT_OUT and results_md != results_files.DEFAULT_RESULTS_MD
    if expected_md == "next to out":
        assert pathlib.Path(results_md).parent == pathlib.Path(out).parent
    else:
        assert results_md == expected_md


def _suite_args(flags):
    """The parsed flags of `python -m benchmarks all FLAGS`."""
    _, args, _ = cli.parse(["all", *flags])
    return args


def test_precisions_per_benchmark():
    full = suite_settings.precisions_per_benchmark(_suite_args([]))
    assert full == {name: ["float32", "mixed_bfloat16"]
                    for name in suite_settings.PRECISION_BENCHMARKS}
    smoke = suite_settings.precisions_per_benchmark(_suite_args(["--smoke"]))
    assert smoke["inference"] == smoke["train_step"] == ["float32", "mixed_bfloat16"]
    assert smoke["stages"] == ["float32"]  # kept short; an explicit flag covers stages too
    chosen = suite_settings.precisions_per_benchmark(_suite_args(
        ["--smoke", "--precisions", "mixed_bfloat16,float32,mixed_bfloat16"]))
    assert chosen["stages"] == ["mixed_bfloat16", "float32"]


def test_suite_knows_the_same_policies_as_mrcnn_tf():
    """suite_settings spells out mrcnn_tf.training.precision.POLICIES (importing it imports
    TF); read from its source, so this test needs no TensorFlow either."""
    source = (REPO / "mrcnn_tf" / "training" / "precision.py").read_text()
    assigned = [node.value for node in ast.parse(source).body if isinstance(node, ast.Assign)
                and any(getattr(t, "id", None) == "POLICIES" for t in node.targets)]
    assert len(assigned) == 1 and ast.literal_eval(assigned[0]) == suite_settings.POLICIES


def test_bf16_hardware_from_cpu_flags():
    assert machine.bf16_hardware({"avx2", "avx512f", "avx512_bf16"})
    assert machine.bf16_hardware({"amx_bf16", "amx_tile"})
    assert not machine.bf16_hardware({"avx2", "avx512f", "avx512_vnni"})
    assert machine.cpu_description()["bf16_hardware"] == machine.bf16_hardware()


def test_write_text_atomic_creates_the_folder_and_replaces(tmp_path):
    path = tmp_path / "new" / "folder" / "out.json"
    results_files.write_text_atomic(path, "first")
    results_files.write_text_atomic(path, "second")
    assert path.read_text() == "second"
    assert [p.name for p in path.parent.iterdir()] == ["out.json"]  # no temporary file left


def test_inference_section_shows_precision_and_agreement():
    """A mixed_bfloat16 row run without bf16 instructions says so; the agreement table is
    there when the results have one, and results from before the precision rows still
    render (as float32)."""
    timed = {"size": 64, "batch": 1, "median_ms": 2.0, "p90_ms": 3.0, "images_per_s": 500.0,
             "peak_rss_mb": 100.0}
    rows = [dict(timed), dict(timed, precision="mixed_bfloat16", bf16_hardware=False),
            dict(timed, min_detections=8, max_detections=12, score_threshold=0.0123,
                 achieved_gflops=120.0)]
    agreement = {"size": 64, "images": 1, "precision": "mixed_bfloat16", "bf16_hardware": False,
                 "detections": 10, "matched": 7, "matched_fraction": 0.7, "mask_iou_min": 0.5,
                 "mask_iou_median": 0.9, "same_box_mask_iou_min": 0.8,
                 "same_box_mask_iou_median": 0.97, "same_box_fraction": 0.9,
                 "match_box_iou": 0.9, "same_box_mask_iou_threshold": 0.95}
    ceilings = {"rows": [], "ceilings": {"float32": {"conv3x3": 200.0, "matmul": 250.0},
                                         "bfloat16": {"conv3x3": 600.0, "matmul": 500.0}}}
    results = {"benchmarks": {"inference": {"status": "ok", "results": {
        "rows": rows, "agreement": [agreement], "what": "x"}}}}
    text = "\n".join(report.inference_section(results))
    assert "| 64 | 1 | float32 | - | 2.00 |" in text
    assert "| 64 | 1 | mixed_bfloat16 (no bf16 instructions) | - | 2.00 |" in text
    # A realistic-count row says its detections and threshold; with the ceilings measured,
    # its GFLOP/s is stated as a share of its precision's conv ceiling (120 / 200).
    assert "| 64 | 1 | float32 | 8-12 (threshold 0.0123) | 2.00 |" in text
    results["benchmarks"]["ceilings"] = {"status": "ok", "results": ceilings}
    assert "| 120.0 | 60% | 100.0 |" in "\n".join(report.inference_section(results))
    assert "### inference: mixed precision against float32" in text
    assert "| 64 | 1 | mixed_bfloat16 (no bf16 instructions) | 10 | 7 (0.7) | 0.5 |" in text
    del results["benchmarks"]["inference"]["results"]["agreement"]
    assert "against float32" not in "\n".join(report.inference_section(results))
