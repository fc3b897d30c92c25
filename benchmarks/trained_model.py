"""What the tasks that measure a trained model share (precision_agreement, tflite_accuracy):
the model of --weights with the demo's held-out synthetic images, the APs they report, and
how they print and write their results.
"""

import json

from benchmarks.results_files import write_text_atomic
from mrcnn_tf import demo
from mrcnn_tf.data.synthetic import synthetic_set_for
from mrcnn_tf.modeling.weights import load_model

APS = ("bbox/AP", "bbox/AP50", "segm/AP", "segm/AP50")


def add_arguments(parser):
    """--weights, --images and --out, the arguments every such task takes."""
    parser.add_argument("--weights", required=True, help="a .keras model or run folder")
    parser.add_argument("--images", type=int, default=200, help="held-out synthetic images")
    parser.add_argument("--out", default=None, help="write the numbers as JSON here")


def model_and_examples(weights, num_images):
    """(the float32 model of `weights`, its config's synthetic set, `num_images` held-out
    examples of it: the demo's evaluation images, seed demo.EVAL_SEED, at the model's
    image_max_size)."""
    model = load_model(weights)
    synthetic = synthetic_set_for(model.config)
    examples = synthetic.make_arrays(num_images, demo.EVAL_SEED, model.config.image_max_size)
    return model, synthetic, examples


def ap_values(metrics):
    """The `APS` of an `evaluator.evaluate_model` metrics dict, rounded to 4 digits."""
    return {key: round(metrics[key], 4) for key in APS}


def report(results, markdown_lines, out):
    """Prints `results` as JSON and the markdown lines; writes the JSON to `out` (atomically)
    when given. Returns exit status 0."""
    text = json.dumps(results, indent=1)
    print(text)
    print("\n".join(markdown_lines))
    if out:
        write_text_atomic(out, text + "\n")
    return 0
