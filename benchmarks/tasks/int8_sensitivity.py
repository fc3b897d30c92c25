"""Which layers cost full-integer int8 its AP: one calibration, then int8 files with chosen
nodes kept in float32, each scored on the held-out images.

    python -m benchmarks int8_sensitivity --weights runs/demo --images 200

The model of --weights is calibrated once (`tflite.convert_tflite(..., calibrate_only=True)`
on --calibration_images images of its synthetic training set, as `tflite_accuracy` does) and
quantized again for each variant (`tflite.quantize_calibrated(float_nodes=...)`): every
`INT8_OPS` node quantized; the backbone, FPN, heads or backbone + FPN kept float32; each
backbone node kept float32 alone; every node kept float32. Also the calibrated float model
itself, which should score as Keras does. Rows: box and mask AP, file MB, ms per image.

Prints the numbers as JSON and a markdown table; writes the JSON to --out (atomically).
"""

import os
import re
import statistics
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks import trained_model  # noqa: E402
from benchmarks.tables import table  # noqa: E402
from benchmarks.tasks.tflite_accuracy import TFLitePredictor  # noqa: E402
from mrcnn_tf import demo  # noqa: E402
from mrcnn_tf.evaluation import evaluator  # noqa: E402
from mrcnn_tf.export import tflite  # noqa: E402

# Variant name -> regular expression of the node names kept float32 (None: none).
GROUPS = {
    "every node int8": None,
    "backbone float32": r"/backbone",
    "FPN and heads float32": r"/fpn|_head",
    "backbone and FPN float32": r"/backbone|/fpn",
    "RPN head float32": r"/rpn_head",
    "box head float32": r"/box_head",
    "mask head float32": r"/mask_head",
    "every node float32": r".",
}


def add_arguments(parser):
    trained_model.add_arguments(parser)
    parser.add_argument("--calibration_images", type=int, default=100,
                        help="synthetic training images (the demo's training seed) that "
                             "calibrate the int8 files")
    parser.add_argument("--per_layer", action="store_true",
                        help="also each backbone node kept float32 alone")


def variants(nodes, per_layer):
    """[(name, [node names kept float32])] of the calibrated model's `nodes`."""
    names = [name for _, name in nodes]
    out = [(label, [n for n in names if pattern and re.search(pattern, n)])
           for label, pattern in GROUPS.items()]
    if per_layer:
        out += [(f"only {n.split(';')[0]} float32", [n]) for n in names if "/backbone" in n]
    return out


def run(weights, num_images=200, calibration_images=100, per_layer=False):
    """{"rows": Keras, the calibrated float model, then one per variant, "settings"}."""
    model, synthetic, examples = trained_model.model_and_examples(weights, num_images)
    config = model.config

    def score(predictor):
        metrics = evaluator.evaluate_model(predictor, examples, model.label_map,
                                           print_summary=False)
        return trained_model.ap_values(metrics)

    rows = [{"variant": "keras float32", **score(model)}]
    calibration = (e["image"] for e in synthetic.make_arrays(
        calibration_images, demo.TRAIN_SEED, config.image_max_size))
    calibrated = tflite.convert_tflite(model, "int8", calibration_images=calibration,
                                       calibrate_only=True)
    nodes = tflite.int8_nodes(calibrated)
    files = [("calibrated float model", calibrated, 0)]
    files += [(name, None, kept) for name, kept in variants(nodes, per_layer)]
    with tempfile.TemporaryDirectory(prefix="mrcnn-int8-sensitivity-") as folder:
        for index, (name, content, kept) in enumerate(files):
            if content is None:
                content = tflite.quantize_calibrated(calibrated, kept)
            path = os.path.join(folder, f"{index}.tflite")
            with open(path, "wb") as f:
                f.write(content)
            predictor = TFLitePredictor(path, model)
            rows.append({"variant": name, "float32_nodes": len(kept) if kept else 0,
                         **score(predictor), "file_mb": round(len(content) / 1e6, 2),
                         "ms_per_image_median": round(
                             1000 * statistics.median(predictor.seconds), 2)})
    return {"rows": rows, "settings": {"weights": weights, "images": num_images,
                                       "seed": demo.EVAL_SEED, "int8_nodes": len(nodes),
                                       "calibration_images": calibration_images,
                                       "config": config.name}}


def markdown(results):
    """`run`'s rows as markdown lines."""
    return table(["variant", "float32 nodes", "box AP", "mask AP", "file MB",
                  "ms/image (median)"],
                 [[r["variant"], r.get("float32_nodes"), r["bbox/AP"], r["segm/AP"],
                   r.get("file_mb"), r.get("ms_per_image_median")] for r in results["rows"]])


def main(args):
    """Measures, prints JSON and markdown, writes --out; exit status 0."""
    results = run(args.weights, args.images, args.calibration_images, args.per_layer)
    return trained_model.report(results, markdown(results), args.out)
