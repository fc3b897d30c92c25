"""coco_scale part `evaluate`: peak memory of `evaluate_model` with coco_gt=None (ground truth
built from the examples) over N synthetic shapes images, for a small N and one ten times
larger, each N in a child process of its own so that each peak is that N's alone.

The examples are re-iterable and made afresh on each pass (`shapes.generate_shapes_example`),
as a dataset read from disk is: evaluate_model encodes the ground truth in a first pass and the
predictions in a second, keeping only their COCO encodings (RLE masks), so the peak should not
grow with N beyond those small encodings (target: peak ratio ~1.0). For comparison each row
also gives, computed and not measured, the bytes that listing the examples (what
evaluate_model did before) would hold: every image and full-image uint8 mask at once.

The model is the `shapes_tiny` preset with seeded random weights made numerically sane
(benchmarks/models.py), score threshold 0 and DETECTIONS_PER_IMAGE detections, so every image
carries that many results (with masks) into COCOeval.

The child: `python -m benchmarks.coco_scale_evaluate SPEC.json RESULT.json`.
"""

import json
import os
import sys
import tempfile
import time

from benchmarks import memory, processes, threads
from benchmarks.results_files import write_text_atomic

PRESET = "shapes_tiny"
DETECTIONS_PER_IMAGE = 10
FULL = {"counts": (200, 2000), "image_size": 128}
QUICK = {"counts": (20, 200), "image_size": 64}
SEED = 0
MIB = 1024.0 * 1024.0
CHILD_MODULE = "benchmarks.coco_scale_evaluate"  # this module, run as the child
TIMEOUT_S = 1800  # per child; 2,000 images at 128 px take a few minutes on 2 cores


class ShapesExamples:
    """Shapes examples 0..num_images-1 of `seed`, generated anew on every pass and kept by
    none: a re-iterable stand-in for a dataset read from disk one image at a time.

    Each example: image uint8 [S, S, 3], boxes float32 [N, 4], class_ids int32 [N], masks
    uint8 [N, S, S], is_crowd bool [N], image_id int64 [] (`shapes.generate_shapes_example`).
    """

    def __init__(self, num_images, image_size, seed):
        self.num_images, self.image_size, self.seed = num_images, image_size, seed

    def __iter__(self):
        from mrcnn_tf.data import shapes  # noqa: PLC0415 (the child imports TensorFlow, not the parent)
        for index in range(self.num_images):
            yield shapes.generate_shapes_example(index, self.seed, self.image_size)


def _config(image_size):
    """The benchmark's model config: shapes_tiny at `image_size` px, every detection kept."""
    from mrcnn_tf.config import get_config  # noqa: PLC0415
    return get_config(PRESET, image_min_size=image_size, image_max_size=image_size,
                      score_threshold=0.0, detections_per_image=DETECTIONS_PER_IMAGE)


def _evaluate(spec):
    """The child's work: builds the model, warms it up on one image (tracing is not
    measured), then runs evaluate_model over spec["num_images"] images under `PeakMemory`.

    Returns the row: num_images, peak_rss_mib (the process's RSS peak during evaluate_model),
    start_rss_mib (RSS as it started: TensorFlow, the model, the traced graph),
    growth_mib (peak - start), process_peak_rss_mib (the whole child's: imports, model
    building and tracing included), seconds, images_per_s, detections, instances and
    listed_examples_mib_computed.
    """
    threads.pin_tensorflow_threads(spec["threads"])
    from benchmarks import models  # noqa: PLC0415 (imports TensorFlow)
    from mrcnn_tf.data import shapes  # noqa: PLC0415
    from mrcnn_tf.evaluation import evaluator  # noqa: PLC0415
    from mrcnn_tf.labels import LabelMap  # noqa: PLC0415

    size, num_images = spec["image_size"], spec["num_images"]
    model = models.build_model(_config(size), seed=SEED, folded=True)
    model.predict_images([shapes.generate_shapes_example(0, SEED + 1, size)["image"]])
    label_map = LabelMap.from_names(shapes.CLASS_NAMES)
    counted = {"detections": 0, "instances": 0}

    def count(example, prediction):
        counted["detections"] += len(prediction["scores"])
        counted["instances"] += int(example["masks"].shape[0])

    examples = ShapesExamples(num_images, size, SEED)
    start = time.perf_counter()
    with memory.PeakMemory() as peak:
        metrics = evaluator.evaluate_model(model, examples, label_map, print_summary=False,
                                           on_prediction=count)
    seconds = time.perf_counter() - start
    # What `list(examples)` held: every image [S, S, 3] and mask [N_i, S, S], uint8.
    listed_bytes = num_images * size * size * 3 + counted["instances"] * size * size
    return {"num_images": int(metrics["num_images"]),
            "peak_rss_mib": round(peak.peak_mb, 1),
            "start_rss_mib": round(peak.start_mb, 1),
            "growth_mib": round(peak.peak_mb - peak.start_mb, 1),
            "peak_is_reset": peak.peak_is_reset,
            "process_peak_rss_mib": round(memory.process_peak_rss_mb(), 1),
            "seconds": round(seconds, 2),
            "images_per_s": round(num_images / seconds, 2),
            "detections": counted["detections"],
            "instances": counted["instances"],
            "listed_examples_mib_computed": round(listed_bytes / MIB, 1),
            "bbox_AP": round(metrics["bbox/AP"], 4), "segm_AP": round(metrics["segm/AP"], 4)}


def _run_child(spec, workdir):
    """Runs `_evaluate(spec)` in a child process; returns its row, or raises with the end of
    the child's log."""
    name = f"evaluate-{spec['num_images']}"
    spec_path = os.path.join(workdir, f"{name}.spec.json")
    result_path = os.path.join(workdir, f"{name}.result.json")
    log_path = os.path.join(workdir, f"{name}.log")
    write_text_atomic(spec_path, json.dumps(spec))
    command = [sys.executable, "-u", "-m", CHILD_MODULE, spec_path, result_path]
    process = processes.run_child(command, TIMEOUT_S, log_path,
                                  env=processes.child_env(**threads.thread_env(spec["threads"])))
    if not os.path.exists(result_path):
        why = "timed out" if process["timed_out"] else f"exit code {process['returncode']}"
        raise RuntimeError(f"coco_scale evaluate, {spec['num_images']} images: {why}\n"
                           + processes.log_tail(log_path))
    with open(result_path) as f:
        return json.load(f)


def _ratio(rows, key):
    """rows[-1][key] / rows[0][key], rounded; None where the first is not positive."""
    first, last = rows[0][key], rows[-1][key]
    return round(last / first, 3) if first and first > 0 else None


def run(quick=False):
    """Evaluates each count of images in a child process of its own.

    Returns {"rows": one per count (see `_evaluate`),
    "peak_ratio": peak_rss_mib of the largest count over the smallest's (flat: ~1.0),
    "growth_ratio": the same for growth_mib (the part above TensorFlow and the model),
    "images_ratio", "settings"}.
    """
    settings = QUICK if quick else FULL
    num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    rows = []
    with tempfile.TemporaryDirectory(prefix="coco_scale_evaluate_") as workdir:
        for count in settings["counts"]:
            rows.append(_run_child({"num_images": count, "image_size": settings["image_size"],
                                    "threads": num_threads}, workdir))
    return {
        "rows": rows,
        "peak_ratio": _ratio(rows, "peak_rss_mib"),
        "growth_ratio": _ratio(rows, "growth_mib"),
        "images_ratio": round(rows[-1]["num_images"] / rows[0]["num_images"], 3),
        "settings": {
            "quick": bool(quick), "preset": PRESET, "image_size": settings["image_size"],
            "counts": list(settings["counts"]), "coco_gt": None,
            "overrides": {"image_min_size": settings["image_size"],
                          "image_max_size": settings["image_size"], "score_threshold": 0.0,
                          "detections_per_image": DETECTIONS_PER_IMAGE},
            "weights": f"random, seed {SEED}, made sane (benchmarks/models.py)",
            "examples": "shapes.generate_shapes_example, made anew on each pass",
            "iou_types": ["bbox", "segm"], "warmup_images": 1,
            # Each child pins TensorFlow's pools to the usable cores (benchmarks/threads.py).
            "usable_cpus": num_threads, "tf_intra_op_threads": num_threads,
            "tf_inter_op_threads": num_threads,
            "listed_examples_mib_computed": "images and masks as uint8, computed, not measured",
        },
    }


def _child_main(argv):
    """The child: argv = [SPEC.json, RESULT.json]. Returns the exit status."""
    spec_path, result_path = argv
    with open(spec_path) as f:
        spec = json.load(f)
    write_text_atomic(result_path, json.dumps(_evaluate(spec)))
    return 0


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1:]))
