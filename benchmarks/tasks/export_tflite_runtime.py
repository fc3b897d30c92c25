"""Job runtime_tflite, a child of the `export` benchmark: times an exported .tflite file with
the LiteRT interpreter alone (no TensorFlow import), as a phone or a small server would run
it; the process's peak RSS is then the runtime's own."""

import time

import numpy as np

from benchmarks import timing
from benchmarks.memory import PeakMemory

SIGNATURE_KEY = "serving_default"  # as written by mrcnn_tf.export.tflite
INPUT_NAME = "images"


def make_interpreter(path, threads):
    """An allocated interpreter on `threads` threads, and the runtime's name.

    ai_edge_litert, which TF 2.21 recommends over its deprecated tf.lite.Interpreter; without
    it, tf.lite's (as mrcnn_tf.export.tflite.make_interpreter does), whose process then also
    holds TensorFlow. mrcnn_tf's own make_interpreter takes no thread count, hence this one.
    """
    try:
        from ai_edge_litert.interpreter import Interpreter  # noqa: PLC0415
        runtime = "ai_edge_litert"
    except ImportError:
        import tensorflow as tf  # noqa: PLC0415
        Interpreter, runtime = tf.lite.Interpreter, "tf.lite (ai-edge-litert not installed)"
    interpreter = Interpreter(model_path=path, num_threads=int(threads))
    interpreter.allocate_tensors()
    return interpreter, runtime


def run(spec):
    """Loads spec["runtime"]["path"] and times its signature on one uint8 noise image.

    Returns: {"rows": [timed row for batch 1], "load_s": seconds to load and allocate,
      "runtime": the interpreter's name}.
    """
    settings = spec["runtime"]
    start = time.perf_counter()
    interpreter, runtime = make_interpreter(settings["path"], spec["threads"])
    runner = interpreter.get_signature_runner(SIGNATURE_KEY)
    load_s = time.perf_counter() - start
    shape = tuple(runner.get_input_details()[INPUT_NAME]["shape"])
    image = np.random.default_rng(0).integers(0, 256, shape, np.uint8)
    detections = []

    def run_once():
        detections.append(float(runner(**{INPUT_NAME: image})["num_detections"][0]))

    with PeakMemory() as peak:
        stats = timing.time_calls(run_once, spec["warmup"], spec["repeats"])
    row = {"size": settings["size"], "batch": int(shape[0]),
           "min_detections": min(detections)}
    row.update(stats)
    row.update(peak.as_dict())
    return {"rows": [row], "load_s": round(load_s, 2), "runtime": runtime}
