"""A study's results as a table (mean and spread over seeds, next to the paper's numbers) and a
bar chart, written beside its runs: OUT/results.json, OUT/table.md, OUT/chart.png."""

from __future__ import annotations

import math
import os
from typing import Dict, List, Sequence

import numpy as np

from mrcnn_tf import visualize
from mrcnn_tf.ablation.studies import Study
from mrcnn_tf.io_utils import atomic_write, write_json_atomic, write_png_atomic

# Table columns: (metric key of a run, header).
COLUMNS = (("segm/AP", "mask AP"), ("segm/AP50", "mask AP50"), ("segm/AP75", "mask AP75"),
           ("bbox/AP", "box AP"))
# The chart's bars.
CHART_SERIES = (("segm/AP", "mask AP"), ("segm/AP75", "mask AP75"), ("bbox/AP", "box AP"))


def summarize(study: Study, results: Sequence[dict]) -> List[Dict]:
    """One row per variant: seeds, and per metric (and train seconds) mean, std, min, max.

    Args:
      results: run results (`runner.run_study`), any order.
    Returns:
      [{"variant", "paper_mask_ap", "seeds", "steps", KEY: {"mean", "std", "min", "max"}, ...}]
      in the study's variant order (variants without results are left out).
    """
    rows = []
    for variant in study.variants:
        runs = [r for r in results if r["variant"] == variant.label]
        if not runs:
            continue
        row = {"variant": variant.label, "paper_mask_ap": variant.paper_mask_ap,
               "seeds": sorted(r["seed"] for r in runs), "steps": runs[0]["steps"]}
        values = {key: [r["metrics"][key] for r in runs] for key, _ in COLUMNS}
        values["train_seconds"] = [r["train_seconds"] for r in runs]
        for key, numbers in values.items():
            numbers = np.asarray(numbers, np.float64)
            row[key] = {"mean": float(numbers.mean()), "std": float(numbers.std()),
                        "min": float(numbers.min()), "max": float(numbers.max())}
        rows.append(row)
    return rows


def markdown_table(study: Study, rows: Sequence[Dict]) -> str:
    """The rows as a Markdown table: mean ± standard deviation over seeds (AP in points, as
    COCO reports it), the training time, and the paper's mask AP."""
    header = (["variant"] + [name for _, name in COLUMNS] + ["train time (s)", "seeds",
                                                                "paper mask AP"])
    lines = [f"**{study.name}**: {study.question}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [row["variant"]]
        cells += [f"{100 * row[key]['mean']:.1f} ± {100 * row[key]['std']:.1f}"
                  for key, _ in COLUMNS]
        cells.append(f"{row['train_seconds']['mean']:.0f}")
        cells.append(str(len(row["seeds"])))
        cells.append("—" if row["paper_mask_ap"] is None else f"{row['paper_mask_ap']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    steps = rows[0]["steps"] if rows else 0
    lines += ["", f"Each run: {steps} steps from scratch; mean ± std over seeds. Paper: "
              f"{study.paper_source} (COCO, not comparable in size, only in order)."]
    return "\n".join(lines) + "\n"


def chart(study: Study, rows: Sequence[Dict]) -> np.ndarray:
    """The bar chart: per variant, mask AP, mask AP75 and box AP (mean, whiskers from the
    worst to the best seed), the paper's mask AP under its name."""
    groups = [row["variant"] for row in rows]
    stat = {s: np.array([[row[key][s] for key, _ in CHART_SERIES] for row in rows])
            for s in ("mean", "min", "max")}
    notes = [("" if row["paper_mask_ap"] is None else f"paper {row['paper_mask_ap']:.1f}")
             for row in rows]
    # The y axis ends at the first tenth above the best seed (room for the labels), at most 1.
    y_max = min(1.0, math.ceil((float(stat["max"].max(initial=0.0)) + 0.05) * 10) / 10)
    return visualize.grouped_bar_chart(
        f"{study.name}: {rows[0]['steps'] if rows else 0} steps, "
        f"{max((len(r['seeds']) for r in rows), default=0)} seeds",
        groups, [name for _, name in CHART_SERIES], stat["mean"], stat["min"], stat["max"],
        notes=notes, y_max=y_max)


def write_report(study: Study, results: Sequence[dict], out_dir: str) -> Dict[str, str]:
    """Writes results.json, table.md and chart.png (atomically) into `out_dir`; returns their
    paths."""
    rows = summarize(study, results)
    if not rows:
        raise ValueError(f"{study.name}: no finished runs in {out_dir} to report")
    paths = {name: os.path.join(out_dir, name)
             for name in ("results.json", "table.md", "chart.png")}
    write_json_atomic(paths["results.json"], {"study": study.name, "rows": rows}, indent=1)
    with atomic_write(paths["table.md"], "w") as f:
        f.write(markdown_table(study, rows))
    write_png_atomic(paths["chart.png"], chart(study, rows))
    return paths
