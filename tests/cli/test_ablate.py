"""`mrcnn-tf ablate`: a scaled-down study end to end (a smoke test: it checks the files, the
table and resuming, not what the AP comes out at), and its one-line refusals."""

import json
import os

from helpers import assert_one_line_error, run_inprocess  # noqa: E402

SMALL = ("--seeds", "1", "--steps", "2", "--train_images", "4", "--eval_images", "2")


def test_a_small_study_writes_runs_table_and_chart_and_resumes(tmp_path, capsys):
    out = tmp_path / "mask_loss"
    code, stdout, err = run_inprocess(capsys, "ablate", "--study", "mask_loss", "--out",
                                      str(out), *SMALL)
    assert code == 0, err[-2000:]
    runs = sorted(p.relative_to(out).as_posix() for p in (out / "runs").rglob("*.json"))
    assert runs == ["runs/sigmoid/seed-0.json", "runs/softmax/seed-0.json"]
    run = json.loads((out / "runs/softmax/seed-0.json").read_text())
    assert run["steps"] == 2 and run["config"]["mask_loss"] == "softmax"
    assert 0.0 <= run["metrics"]["segm/AP"] <= 1.0 and run["train_seconds"] > 0
    table = (out / "table.md").read_text()
    assert "| sigmoid |" in table and "| softmax |" in table and "24.8" in table
    assert (out / "chart.png").stat().st_size > 1000
    assert "table:" in stdout and "softmax seed 0: mask AP" in stdout

    # Run again: both runs are found on disk, none is trained again.
    stamps = {p: os.stat(out / p).st_mtime_ns for p in runs}
    code, stdout, err = run_inprocess(capsys, "ablate", "--study", "mask_loss", "--out",
                                      str(out), *SMALL)
    assert code == 0, err[-2000:]
    assert {p: os.stat(out / p).st_mtime_ns for p in runs} == stamps


def test_bad_flags_are_one_line_errors(tmp_path, capsys):
    code, _, err = run_inprocess(capsys, "ablate", "--study", "roi", "--out", str(tmp_path))
    assert_one_line_error(code, err, "--study=roi", "roi_pooler", "mask_head")
    code, _, err = run_inprocess(capsys, "ablate", "--out", str(tmp_path))
    assert_one_line_error(code, err, "missing --study")
    code, _, err = run_inprocess(capsys, "ablate", "--study", "mask_loss", "--seeds", "0",
                                 "--out", str(tmp_path))
    assert_one_line_error(code, err, "--seeds=0", "expected an integer >= 1")
