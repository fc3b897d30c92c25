"""The studies' definitions and the report (table, chart) built from run results."""

import json

import numpy as np
import pytest

from mrcnn_tf import visualize
from mrcnn_tf.ablation import report, studies


@pytest.mark.parametrize("name", list(studies.STUDIES))
def test_every_variant_is_a_valid_config_differing_only_in_its_fields(name):
    study = studies.get_study(name)
    base = study.base_config()
    assert base.roi_levels == (3, 3) and base.image_max_size == 256
    assert len(study.variants) >= 2
    configs = [variant.config(base) for variant in study.variants]
    for variant, config in zip(study.variants, configs):
        changed = {k for k, v in config.to_dict().items() if v != getattr(base, k)} - {"name"}
        assert changed <= {k for k, _ in variant.changes}, (variant.label, changed)
    # The variants really differ from one another.
    assert len({json.dumps(c.to_dict(), sort_keys=True, default=str).replace(c.name, "")
                for c in configs}) == len(configs)


def test_unknown_study_names_the_known_ones():
    with pytest.raises(ValueError, match="--study=roi: expected one of roi_pooler, "):
        studies.get_study("roi")


def _result(variant, seed, ap):
    metrics = {k: ap for k in ("segm/AP", "segm/AP50", "segm/AP75", "bbox/AP", "bbox/AP50",
                               "bbox/AP75")}
    return {"variant": variant, "seed": seed, "steps": 10, "train_seconds": 100.0 + seed,
            "metrics": metrics}


def test_summary_table_and_chart():
    study = studies.get_study("mask_loss")
    results = [_result("softmax", 0, 0.2), _result("sigmoid", 1, 0.5),
               _result("sigmoid", 0, 0.3)]
    rows = report.summarize(study, results)
    assert [r["variant"] for r in rows] == ["sigmoid", "softmax"]  # the study's order
    sigmoid = rows[0]
    assert sigmoid["seeds"] == [0, 1] and sigmoid["paper_mask_ap"] == 30.3
    assert sigmoid["segm/AP"] == pytest.approx({"mean": 0.4, "std": 0.1, "min": 0.3,
                                                "max": 0.5})
    assert sigmoid["train_seconds"]["mean"] == pytest.approx(100.5)
    table = report.markdown_table(study, rows)
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert lines[1].startswith("| sigmoid | 40.0 ± 10.0 | 40.0 ± 10.0 | 40.0 ± 10.0 | "
                               "40.0 ± 10.0 | 100 | 2 | 30.3 |")
    assert lines[2].startswith("| softmax | 20.0 ± 0.0 |") and lines[2].endswith("| 24.8 |")
    image = report.chart(study, rows)
    assert image.dtype == np.uint8 and image.shape == (480, 760, 3)
    assert (image != 255).any(axis=2).mean() > 0.05  # bars drawn, not a blank canvas


def test_write_report_writes_three_files_and_refuses_nothing_to_report(tmp_path):
    study = studies.get_study("mask_classes")
    paths = report.write_report(study, [_result("class_agnostic", 0, 0.25)], str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chart.png", "results.json",
                                                          "table.md"]
    assert json.loads((tmp_path / "results.json").read_text())["rows"][0]["variant"] == \
        "class_agnostic"
    assert paths["table.md"].endswith("table.md")
    with pytest.raises(ValueError, match="mask_classes: no finished runs"):
        report.write_report(study, [], str(tmp_path))


def test_bar_chart_checks_its_shapes():
    with pytest.raises(ValueError, match=r"expected \(2, 3\) \(groups x series\)"):
        visualize.grouped_bar_chart("t", ["a", "b"], ["x", "y", "z"], np.zeros((2, 2)),
                                    np.zeros((2, 2)), np.zeros((2, 2)))
    bars = visualize.grouped_bar_chart("t", ["a", "b"], ["x"], [[0.2], [0.8]], [[0.1], [0.7]],
                                       [[0.3], [0.9]])
    # The taller mean draws more of its series' colour.
    blue = np.all(bars == (31, 119, 180), axis=2)
    half = bars.shape[1] // 2
    assert blue[:, half:].sum() > 2 * blue[:, :half].sum() > 0


def test_bar_chart_ticks_line_up_with_the_bars():
    # y_max 0.4: a grid line every 0.1; a bar of 0.3 ends on the 0.3 line.
    bars = visualize.grouped_bar_chart("t", ["a"], ["x"], [[0.3]], [[0.3]], [[0.3]],
                                       y_max=0.4)
    grid_rows = np.flatnonzero(np.all(bars == 225, axis=2).sum(axis=1) > 100)
    blue_rows = np.flatnonzero(np.all(bars == (31, 119, 180), axis=2).sum(axis=1) > 100)
    assert len(grid_rows) == 4  # 0.1 .. 0.4 (0.0 is the black axis)
    assert abs(blue_rows.min() - grid_rows[1]) <= 1  # rows grow downwards: 0.4, 0.3, ...
