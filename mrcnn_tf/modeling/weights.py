"""Loading weights for a given config, with a one-line error when they were made for another.

Accepted files: a `.keras` model (its config travels with it), a run folder (its best or
final model), or a `.weights.h5` file (checked variable by variable against the model).
"""

from __future__ import annotations

import os
from typing import Optional

import h5py
import keras

from mrcnn_tf.config import Config

# Config fields that change the shape or the meaning of weights.
ARCHITECTURE_FIELDS = ("num_classes", "backbone", "norm", "stride_in_1x1", "tiny_widths",
                       "fpn_channels", "fpn_norm", "anchor_ratios", "rpn_head_num_convs",
                       "box_head_num_convs", "box_head_conv_dim", "box_head_num_fcs",
                       "box_head_fc_dim", "box_head_norm", "mask_head_conv_dim",
                       "mask_head_num_convs", "mask_head_norm", "mask_pool_size",
                       "mask_head_type", "mask_head_fc_dim", "mask_upsample",
                       "mask_class_agnostic",
                       "box_pool_size", "mask_on", "num_keypoints", "keypoint_head_conv_dim",
                       "keypoint_head_num_convs")
# A run folder's models, in order of preference.
RUN_FOLDER_MODELS = ("best.keras", "model.keras")


def resolve_model_path(path: str, flag: str = "--weights") -> str:
    """A `.keras` / `.weights.h5` file as given, or a run folder's best (else final, else
    newest epoch) model."""
    if os.path.isdir(path):
        for name in RUN_FOLDER_MODELS:
            if os.path.isfile(os.path.join(path, name)):
                return os.path.join(path, name)
        folder = os.path.join(path, "checkpoints")
        # By epoch number: epoch-10000.keras is newer than epoch-9999.keras.
        epochs = sorted((int(n[6:-6]), n) for n in os.listdir(folder)
                        if n.startswith("epoch-") and n.endswith(".keras") and n[6:-6].isdigit()
                        ) if os.path.isdir(folder) else []
        if epochs:
            return os.path.join(folder, epochs[-1][1])
        raise ValueError(f"{flag}={path}: a folder without {' or '.join(RUN_FOLDER_MODELS)} "
                         "or checkpoints/epoch-*.keras; expected a run folder or a model file")
    if not os.path.isfile(path):
        raise ValueError(f"{flag}={path}: no such file (expected a .keras model, a "
                         ".weights.h5 file or a run folder)")
    if not path.endswith((".keras", ".weights.h5")):
        raise ValueError(f"{flag}={path}: expected a .keras model, a .weights.h5 file or a "
                         "run folder")
    return path


# The name MaskRCNN is registered under (keras.saving.register_keras_serializable).
MODEL_REGISTERED_NAME = "mrcnn_tf>MaskRCNN"


def load_model(path: str, flag: str = "--weights"):
    """The MaskRCNN saved at `path` (a .keras file or a run folder).

    This module stands below modeling/mask_rcnn.py (whose from_preset uses it), so it does
    not import it: MaskRCNN is registered with Keras once mask_rcnn is imported, as it is by
    every caller (`mrcnn_tf.load`, MaskRCNN's own methods, the CLI, the trainer).
    """
    if keras.saving.get_registered_object(MODEL_REGISTERED_NAME) is None:
        raise RuntimeError("weights.load_model: MaskRCNN is not registered with Keras yet; "
                           "use mrcnn_tf.load, or import mrcnn_tf.modeling.mask_rcnn first")
    path = resolve_model_path(path, flag)
    if not path.endswith(".keras"):
        raise ValueError(f"{flag}={path}: a .weights.h5 file has no config; pass --config "
                         "with it, or give a .keras model")
    try:
        # Safe mode (Keras' default, stated): a file whose config carries Python code (a
        # Lambda's bytecode) is refused instead of run.
        model = keras.models.load_model(path, safe_mode=True)
    except (ValueError, OSError, TypeError) as error:
        detail = " ".join(str(error).split())[:400]
        raise ValueError(f"{flag}={path}: not a loadable mrcnn-tf model ({detail})") from None
    if not model.built:
        # Saved before it was ever built: the file has a config but no weights, and Keras
        # would hand back a model that builds itself with fresh random ones.
        raise ValueError(f"{flag}={path}: the file holds no weights (the model was saved "
                         "before it was built); save a built model")
    return model


def architecture_differences(saved: Config, wanted: Config) -> list:
    """["num_classes=80 (this config: 3)", ...] for fields that make weights incompatible."""
    return [f"{name}={getattr(saved, name)!r} (this config: {getattr(wanted, name)!r})"
            for name in ARCHITECTURE_FIELDS if getattr(saved, name) != getattr(wanted, name)]


# Layers whose shapes depend on the class count: re-initialized when fine-tuning on new classes.
CLASS_SPECIFIC_LAYERS = ("box_head/class_logits/", "box_head/box_deltas/", "mask_head/predictor/")
# The keypoint head's output layer (one heatmap per keypoint type): re-initialized too when
# fine-tuning on new classes with another keypoint set.
KEYPOINT_SPECIFIC_LAYERS = ("keypoint_head/score_lowres/",)


def load_weights_into(model, path: str, flag: str = "--weights",
                      new_classes: bool = False) -> None:
    """Copies the weights at `path` into the built `model`, or raises a one-line ValueError
    naming the flag and what differs (class count, backbone, ...).

    new_classes: the model has other classes than the weights (fine-tuning on another
    dataset): everything is copied except the class-specific output layers
    (`CLASS_SPECIFIC_LAYERS`, and `KEYPOINT_SPECIFIC_LAYERS` when the keypoint count differs),
    which keep their fresh initialization. Only the class and keypoint counts may differ;
    needs a .keras model or run folder.
    """
    path = resolve_model_path(path, flag)
    if path.endswith(".keras"):
        transfer_weights(load_model(path, flag), model, f"{flag}={path}", new_classes)
        return
    if new_classes:
        raise ValueError(f"{flag}={path}: loading for new classes needs a .keras model or a run "
                         "folder (a .weights.h5 file does not say which layers are which)")
    mismatch = _h5_mismatch(model, path, flag)
    if mismatch:
        raise ValueError(f"{flag}={path}: made for another config: {mismatch}")
    model.load_weights(path)


def transfer_weights(source, model, where: str, new_classes: bool = False) -> None:
    """Copies the weights of MaskRCNN `source` into MaskRCNN `model` (both built), or raises
    a one-line ValueError starting with `where` naming the config fields that differ.

    new_classes: as in `load_weights_into` (the class-specific output layers, and the
    keypoint one when the keypoint counts differ, keep `model`'s fresh initialization).
    """
    differences = architecture_differences(source.config, model.config)
    if new_classes:
        differences = [d for d in differences
                       if not d.startswith(("num_classes=", "num_keypoints="))]
    if differences:
        raise ValueError(f"{where}: made for another config: {'; '.join(differences)}")
    if not new_classes:
        model.set_weights(source.get_weights())
        return
    fresh = CLASS_SPECIFIC_LAYERS
    if source.config.num_keypoints != model.config.num_keypoints:
        fresh += KEYPOINT_SPECIFIC_LAYERS
    _copy_all_but(source, model, fresh)


def _copy_all_but(source, model, fresh_layers) -> None:
    """Copies variable by variable (both models list them in the same order, being the same
    architecture), leaving the layers of `model` named in `fresh_layers` as they are."""
    for theirs, ours in zip(source.weights, model.weights, strict=True):
        if any(layer in ours.path for layer in fresh_layers):
            continue
        if tuple(theirs.shape) != tuple(ours.shape):
            raise ValueError(f"{ours.path}: shape {tuple(theirs.shape)} in the weights, "
                             f"{tuple(ours.shape)} in the model")
        ours.assign(theirs)


def _h5_mismatch(model, path: str, flag: str = "--weights") -> Optional[str]:
    """Compares a .weights.h5 file's arrays with the model's variables; None if they fit."""
    shapes = []
    try:
        with h5py.File(path, "r") as f:
            def visit(name, item):
                # Layer variables sit under their attribute names (backbone/, fpn/, ...,
                # layers/); a compiled model's file also holds optimizer/ variables.
                if isinstance(item, h5py.Dataset) and not name.startswith("optimizer/"):
                    shapes.append(tuple(item.shape))
            f.visititems(visit)
    except OSError as error:
        raise ValueError(f"{flag}={path}: not an HDF5 weights file ({error})") from None
    wanted = [tuple(v.shape) for v in model.weights]
    if sorted(shapes) == sorted(wanted):
        return None
    missing = sorted(set(wanted) - set(shapes))
    extra = sorted(set(shapes) - set(wanted))
    return (f"{len(shapes)} arrays in the file, {len(wanted)} in the model; shapes only in "
            f"the model: {missing[:3]}, only in the file: {extra[:3]} (check num_classes, "
            "backbone and the head sizes)")
