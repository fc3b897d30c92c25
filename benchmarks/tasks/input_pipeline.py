"""Benchmark `input_pipeline`: tf.data images/s of the training pipeline from a COCO-format
folder and from TFRecords of synthetic shapes (benchmarks/input_pipeline.py), per round of
spec["input_pipeline"]["batches"] batches, spec["repeats"] rounds."""

import shutil
import tempfile
import time

from benchmarks import input_pipeline, timing
from benchmarks.memory import PeakMemory
from mrcnn_tf.config import get_config


def run(spec):
    """{"rows": one per source, the time to write the sources, the preset and its canvas}."""
    settings = spec["input_pipeline"]
    config = get_config(settings["preset"], backbone_weights=None,
                        **settings.get("overrides", {}))
    root = tempfile.mkdtemp(prefix="mrcnn-bench-data-")
    try:
        start = time.perf_counter()
        coco, pattern = input_pipeline.write_sources(root, settings["image_size"],
                                                     settings["num_images"],
                                                     settings["num_shards"])
        write_s = time.perf_counter() - start
        datasets = input_pipeline.training_datasets(coco, pattern, config, settings["batch"],
                                                    threads=spec["threads"])
        rows = []
        for source, dataset in datasets.items():
            with PeakMemory() as peak:
                rates = input_pipeline.throughput({source: dataset}, settings["batch"],
                                                  settings["batches"], spec["repeats"])
            # Latency statistics are of milliseconds per image, one value per round.
            row = {"source": source}
            row.update(timing.summarize([1.0 / r for r in rates[source]]))
            row.update(images_per_s_median=round(1000.0 / row["median_ms"], 2),
                       images_per_s_p10=round(1000.0 / row["p90_ms"], 2),
                       images_per_round=settings["batch"] * settings["batches"])
            row.update(peak.as_dict())
            rows.append(row)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {"rows": rows, "write_sources_s": round(write_s, 2),
            "preset": settings["preset"], "image_size": settings["image_size"],
            "canvas": config.max_padded_size, "batch": settings["batch"]}
