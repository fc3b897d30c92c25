"""`mrcnn-tf import-weights`: a torchvision Mask R-CNN or Keypoint R-CNN checkpoint -> a
mrcnn-tf model folder.

Writes OUT/model.keras (with torchvision's label map: COCO's 90 classes, or person for
keypointrcnn_resnet50_fpn), OUT/config.json (the preset that reproduces torchvision's
inference) and OUT/label_map.json. Reading the .pth file needs the
optional extra `pip install mrcnn-tf[torch]`; the file is read with
torch.load(weights_only=True), so no pickled code runs.
"""

from absl import flags

from mrcnn_tf.cli import common
from mrcnn_tf.importers import torchvision_weights

FLAGS = flags.FLAGS
# "from" is a Python keyword: read it as FLAGS["from"].value.
flags.DEFINE_enum("from", "torchvision", ["torchvision"], "import-weights: the library that "
                  "trained the checkpoint.")
flags.DEFINE_enum("arch", "maskrcnn_resnet50_fpn", sorted(torchvision_weights.ARCHITECTURES),
                  "import-weights: the torchvision model builder the checkpoint belongs to.")
flags.DEFINE_string("checkpoint", None, "import-weights: the .pth state dict (may also be "
                    "given as the positional CHECKPOINT).")
flags.DEFINE_float("bn_epsilon", None, "import-weights: the BatchNorm epsilon torchvision "
                   "ran the checkpoint with (default: 0 for maskrcnn_resnet50_fpn and "
                   "keypointrcnn_resnet50_fpn, as torchvision sets for their COCO weights; "
                   "give 1e-5 for such a model built without weights= and trained, and for "
                   "the COCO_LEGACY keypoint weights; 1e-5 for maskrcnn_resnet50_fpn_v2).")

SUMMARY = ("torchvision Mask R-CNN / Keypoint R-CNN .pth -> model.keras + config + "
           "label map")
USAGE = ("--from torchvision --arch maskrcnn_resnet50_fpn[_v2]|keypointrcnn_resnet50_fpn "
         "CHECKPOINT.pth --out DIR (or --checkpoint CHECKPOINT.pth)")
FLAG_NAMES = ("from", "arch", "checkpoint", "bn_epsilon", "out")
POSITIONAL_ARGS = ("CHECKPOINT",)


def checkpoint_path():
    """The checkpoint of --checkpoint or of the positional CHECKPOINT (not both)."""
    positional = common.POSITIONAL[0] if common.POSITIONAL else None
    flag = FLAGS["checkpoint"].value
    if flag is not None and positional is not None and flag != positional:
        raise common.UsageError(f"two checkpoints: --checkpoint={flag} and {positional}; "
                                "give one")
    path = flag if flag is not None else positional
    if path is None:
        raise common.UsageError("missing CHECKPOINT (the torchvision .pth state dict, as an "
                                "argument or --checkpoint)")
    return path


def main():
    checkpoint = checkpoint_path()
    common.require("out")
    try:
        path = torchvision_weights.import_weights(checkpoint, FLAGS.out, FLAGS.arch,
                                                  bn_epsilon=FLAGS.bn_epsilon)
    except ImportError as error:
        raise common.UsageError(str(error)) from None
    print(f"imported {FLAGS['from'].value} {FLAGS.arch} from {checkpoint}: {path} "
          f"(+ config.json, label_map.json)")
