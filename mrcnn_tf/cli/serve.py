"""`mrcnn-tf serve-client`: send images to TF Serving (REST or gRPC), print and draw."""

import json

from absl import flags

from mrcnn_tf.cli import common
from mrcnn_tf.config import PASTE_RULES

FLAGS = flags.FLAGS
flags.DEFINE_string("url", "http://localhost:8501", "serve-client: TF Serving REST URL, or the "
                    "gRPC target host:port with --protocol=grpc.")
flags.DEFINE_string("model_name", "mrcnn", "serve-client: the served model's name.")
flags.DEFINE_enum("protocol", "rest", ["rest", "grpc"], "serve-client: how to call the server.")
flags.DEFINE_string("label_map", None, "serve-client: the export's assets/label_map.json, for "
                    "class names.")
flags.DEFINE_enum("paste_rule", "detectron2", list(PASTE_RULES), "serve-client: "
                  "how to paste the served box-relative masks: the model's paste_rule (its "
                  "export's assets/config.json; torchvision for imported torchvision weights).")

SUMMARY = "send images to TF Serving (REST or gRPC), print and draw the detections"
USAGE = "--inputs IMAGES [--url http://localhost:8501] [--model_name mrcnn] [--out DIR]"
FLAG_NAMES = ("inputs", "url", "model_name", "protocol", "label_map", "paste_rule", "out",
              "score_threshold")


def main():
    from mrcnn_tf import serving_client  # noqa: PLC0415
    from mrcnn_tf.prediction import expand_inputs  # noqa: PLC0415
    common.require("inputs")
    names = None
    if FLAGS.label_map:
        with open(FLAGS.label_map) as f:
            names = {int(c["dataset_id"]): c["name"] for c in json.load(f)["categories"]}
    serving_client.run_client(FLAGS.url, FLAGS.model_name, expand_inputs(FLAGS.inputs),
                              protocol=FLAGS.protocol, out_dir=FLAGS.out,
                              score_threshold=FLAGS.score_threshold, label_map=names,
                              paste_rule=FLAGS.paste_rule)
