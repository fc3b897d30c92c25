"""COCO APs and latency of a trained model's TFLite files: float32, int8_dynamic and
full-integer int8, against the Keras model.

    python -m benchmarks tflite_accuracy --weights runs/demo/model.keras --images 200

The model (a `.keras` file or run folder, e.g. what `mrcnn-tf demo` writes) is exported at
its image_max_size in each quantization; full-integer int8 is calibrated on
--calibration_images images of the model's synthetic training set (seed 0), none of them an
evaluation image. Each file runs in LiteRT on the held-out synthetic images (seed 1000, the
demo's), its detections are finished as a served model's are (`postprocess.finish_detections`:
masks pasted in the image) and scored with pycocotools. Latency is the interpreter's own
invoke per image, median, with this process's threads.

Prints the numbers as JSON and a markdown table; writes the JSON to --out (atomically).
"""

import os
import statistics
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from benchmarks import trained_model  # noqa: E402
from benchmarks.tables import table  # noqa: E402
from mrcnn_tf import demo, postprocess  # noqa: E402
from mrcnn_tf.evaluation import evaluator  # noqa: E402
from mrcnn_tf.export import tflite  # noqa: E402

QUANTIZATIONS = ("float32", "int8_dynamic", "int8")


def add_arguments(parser):
    trained_model.add_arguments(parser)
    parser.add_argument("--calibration_images", type=int, default=100,
                        help="synthetic training images (the demo's training seed) that "
                             "calibrate the int8 file")


class TFLitePredictor:
    """`predict_images` over an exported TFLite file, for `evaluator.evaluate_model`: each
    image (at the file's input size) through the interpreter, finished as a served model's
    detections are. `seconds` collects each invoke's time."""

    def __init__(self, path, model):
        self.interpreter = tflite.make_interpreter(model_path=path)
        self.config, self.label_map = model.config, model.label_map
        self.class_ids = {int(c): i + 1 for i, c in enumerate(model.category_ids)}
        self.seconds = []

    def predict_images(self, images, score_threshold=0.0, batch_size=1):
        del batch_size
        results = []
        for image in images:
            height, width = image.shape[:2]
            start = time.perf_counter()
            out = tflite.run_tflite(self.interpreter, image)
            self.seconds.append(time.perf_counter() - start)
            n = int(out["num_detections"][0])
            rows = {"boxes": out["detection_boxes"][0, :n] * [height, width, height, width],
                    "scores": out["detection_scores"][0, :n],
                    "class_ids": np.array([self.class_ids[int(c)]
                                           for c in out["detection_classes"][0, :n]], np.int32),
                    "masks": out["detection_masks"][0, :n]}
            results.append(postprocess.finish_detections(
                rows, height, width, score_threshold, self.config.paste_rule, self.label_map))
        return results


def run(weights, num_images=200, calibration_images=100):
    """{"rows": the Keras model's, then one per quantization (APs, file MB, ms per image),
    "settings"}."""
    model, synthetic, examples = trained_model.model_and_examples(weights, num_images)
    config = model.config
    keras_metrics = evaluator.evaluate_model(model, examples, model.label_map,
                                             print_summary=False)
    rows = [{"runtime": "keras", "quantization": "float32",
             **trained_model.ap_values(keras_metrics)}]
    with tempfile.TemporaryDirectory(prefix="mrcnn-tflite-accuracy-") as folder:
        for quantization in QUANTIZATIONS:
            calibration = None
            if quantization == "int8":
                calibration = (e["image"] for e in synthetic.make_arrays(
                    calibration_images, demo.TRAIN_SEED, config.image_max_size))
            path = os.path.join(folder, f"{quantization}.tflite")
            start = time.perf_counter()
            info = tflite.export_tflite(model, path, quantization,
                                        calibration_images=calibration)
            export_s = time.perf_counter() - start
            predictor = TFLitePredictor(path, model)
            metrics = evaluator.evaluate_model(predictor, examples, model.label_map,
                                               print_summary=False)
            rows.append({"runtime": "ai_edge_litert", "quantization": quantization,
                         **trained_model.ap_values(metrics),
                         "file_mb": round(info["size_bytes"] / 1e6, 2),
                         "export_s": round(export_s, 1),
                         "ms_per_image_median": round(
                             1000 * statistics.median(predictor.seconds), 2)})
    return {"rows": rows, "settings": {"weights": weights, "images": num_images,
                                       "seed": demo.EVAL_SEED,
                                       "calibration_images": calibration_images,
                                       "config": config.name,
                                       "input_size": config.image_max_size}}


def markdown(results):
    """`run`'s rows as markdown lines."""
    return table(["runtime", "quantization", "box AP", "box AP50", "mask AP", "mask AP50",
                  "file MB", "export s", "ms/image (median)"],
                 [[r["runtime"], r["quantization"], r["bbox/AP"], r["bbox/AP50"],
                   r["segm/AP"], r["segm/AP50"], r.get("file_mb"), r.get("export_s"),
                   r.get("ms_per_image_median")] for r in results["rows"]])


def main(args):
    """Measures, prints JSON and markdown, writes --out; exit status 0."""
    results = run(args.weights, args.images, args.calibration_images)
    return trained_model.report(results, markdown(results), args.out)
