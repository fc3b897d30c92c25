"""Preset directories: a model's config, classes and weights in one folder.

    DIR/config.json       the `Config` (Config.to_dict)
    DIR/label_map.json    the classes 1..K: names and dataset category ids (LabelMap.to_dict)
    DIR/model.weights.h5  the weights (Keras' weights file)
    DIR/metadata.json     what wrote it: versions, parameter count, date (informative only)

`save_to_preset` writes one. Read side, the folders the other commands write are preset
directories too: a run folder (`train`: config.json, label_map.json and best.keras or
model.keras) and an `import-weights` folder (config.json, label_map.json, model.keras). A
`.keras` file there is read in Keras' safe mode (no Python code from the file runs).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import shutil
import tempfile
from typing import Optional

import keras
import tensorflow as tf

from mrcnn_tf.config import Config
from mrcnn_tf.io_utils import write_json_atomic
from mrcnn_tf.labels import LabelMap
from mrcnn_tf.modeling import weights as weight_files

CONFIG_FILE = "config.json"
LABEL_MAP_FILE = "label_map.json"
WEIGHTS_FILE = "model.weights.h5"
METADATA_FILE = "metadata.json"
FORMAT = "mrcnn_tf.preset"
FORMAT_VERSION = 1
# What a directory must hold to be read as a preset, said in every error about one.
EXPECTED = (f"a preset directory holds {CONFIG_FILE}, {LABEL_MAP_FILE} and the weights "
            f"({WEIGHTS_FILE}, or a run folder's best.keras / model.keras)")


@dataclasses.dataclass(frozen=True)
class PresetDir:
    """What a preset directory holds: its config, classes and weights file (None when it has
    none: then it can only give a model with random weights)."""

    path: str
    config: Config
    label_map: LabelMap
    weights_path: Optional[str]


def has_preset_weights(path: str) -> bool:
    """True for a folder holding a preset's config and weights file (what `save_to_preset`
    writes; a run folder holds .keras models instead)."""
    return all(os.path.isfile(os.path.join(path, name)) for name in (CONFIG_FILE, WEIGHTS_FILE))


def is_saved_model_export(path: str) -> bool:
    """True for an `export` folder (a SavedModel, possibly under a version folder)."""
    return (os.path.isfile(os.path.join(path, "saved_model.pb"))
            or os.path.isdir(os.path.join(path, "saved_model")))


def read_preset_dir(path: str, need_weights: bool = True) -> PresetDir:
    """Reads and checks the preset directory `path`.

    Raises:
      ValueError: one line naming the directory or file and what was expected: a missing
        config, label map or weights file (weights only when `need_weights`), a file that does
        not parse, a label map whose class count is not the config's, or a SavedModel export
        (which serves requests but holds no Keras model).
    """
    path = os.fspath(path)
    if not os.path.isdir(path):
        raise ValueError(f"preset directory {path}: no such directory; {EXPECTED}")
    if is_saved_model_export(path):
        raise ValueError(f"{path}: a SavedModel export (for TF Serving, tf.saved_model.load), "
                         "not a preset; load the run folder it was exported from, or export "
                         "with --format preset")
    missing = [name for name in (CONFIG_FILE, LABEL_MAP_FILE)
               if not os.path.isfile(os.path.join(path, name))]
    if missing:
        raise ValueError(f"preset directory {path}: missing {' and '.join(missing)}; "
                         f"{EXPECTED}")
    config = _read(path, CONFIG_FILE, Config.from_dict, "a mrcnn-tf config")
    label_map = _read(path, LABEL_MAP_FILE, LabelMap.from_dict, "a label map")
    if label_map.num_classes != config.num_classes:
        raise ValueError(f"{os.path.join(path, LABEL_MAP_FILE)}: {label_map.num_classes} "
                         f"classes, but {CONFIG_FILE} says num_classes={config.num_classes}")
    weights_path = _weights_file(path)
    if weights_path is None and need_weights:
        raise ValueError(f"preset directory {path}: missing the weights; {EXPECTED} (or "
                         "load it with load_weights=False for random weights)")
    return PresetDir(path, config, label_map, weights_path)


def _read(folder: str, name: str, parse, what: str):
    file = os.path.join(folder, name)
    try:
        with open(file, encoding="utf-8") as f:
            return parse(json.load(f))
    except (OSError, ValueError, TypeError, KeyError) as error:
        detail = " ".join(str(error).split())[:300]
        raise ValueError(f"{file}: not {what} ({detail})") from None


def _weights_file(folder: str) -> Optional[str]:
    """The folder's weights: model.weights.h5, else a run folder's model (best.keras,
    model.keras, the newest checkpoint); None when there is none."""
    h5 = os.path.join(folder, WEIGHTS_FILE)
    if os.path.isfile(h5):
        return h5
    try:
        return weight_files.resolve_model_path(folder)
    except ValueError:
        return None


def load_preset_weights(model, preset: PresetDir, new_classes: bool) -> None:
    """Copies the preset's weights into the built `model` (one-line ValueError naming the file
    when they were made for another architecture).

    new_classes: `model` has another class (or keypoint) count than the preset; everything
    but the class-specific output layers is copied (`weights.transfer_weights`).
    """
    where = f"preset {preset.weights_path}"
    if not new_classes:
        weight_files.load_weights_into(model, preset.weights_path, flag="preset")
        return
    # The file's own model first (its layers named by its own config), then transferred.
    source = type(model)(preset.config, class_names=preset.label_map.names,
                         category_ids=preset.label_map.dataset_ids, load_backbone_weights=False)
    source.build()
    weight_files.load_weights_into(source, preset.weights_path, flag="preset")
    weight_files.transfer_weights(source, model, where, new_classes=True)


def save_to_preset(model, preset_dir) -> str:
    """Writes `model` (a built MaskRCNN) as a preset directory and returns its path.

    The files are written into a temporary folder beside `preset_dir` first; a new directory
    then appears by one rename, complete. An existing directory (a run folder, an older
    preset) gets each file replaced by a rename, and keeps its other files.
    """
    preset_dir = os.path.abspath(os.fspath(preset_dir))
    model._check_built(f"save_to_preset({preset_dir!r})")  # noqa: SLF001 (the model's own rule)
    if os.path.exists(preset_dir) and not os.path.isdir(preset_dir):
        raise ValueError(f"save_to_preset: {preset_dir} is a file; expected a directory")
    parent = os.path.dirname(preset_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=f".{os.path.basename(preset_dir)}.", dir=parent)
    try:
        write_json_atomic(os.path.join(staging, CONFIG_FILE), model.config.to_dict(), indent=2)
        write_json_atomic(os.path.join(staging, LABEL_MAP_FILE), model.label_map.to_dict(),
                          indent=2)
        _weights_only(model).save_weights(os.path.join(staging, WEIGHTS_FILE))
        write_json_atomic(os.path.join(staging, METADATA_FILE), _metadata(model), indent=2)
        if os.path.isdir(preset_dir) and not os.listdir(preset_dir):
            os.rmdir(preset_dir)
        if not os.path.exists(preset_dir):
            os.rename(staging, preset_dir)
            return preset_dir
        # The weights before the config: a reader between two renames sees new weights with
        # an old config only if the architecture stayed (else they would not have fitted).
        for name in (WEIGHTS_FILE, LABEL_MAP_FILE, CONFIG_FILE, METADATA_FILE):
            os.replace(os.path.join(staging, name), os.path.join(preset_dir, name))
        return preset_dir
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _weights_only(model):
    """`model`, or for a compiled one a copy without its optimizer: Keras' weights file would
    carry the optimizer's slots too (twice the size for SGD with momentum), which a preset,
    made to be loaded and fine-tuned anew, has no use for."""
    if getattr(model, "optimizer", None) is None:
        return model
    copy = type(model)(model.config, class_names=model.class_names,
                       category_ids=model.category_ids, load_backbone_weights=False)
    copy.build()
    copy.set_weights(model.get_weights())
    return copy


def _metadata(model) -> dict:
    import mrcnn_tf  # noqa: PLC0415 (the version only; the package root imports nothing)
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "class_name": type(model).__name__,
        "config_name": model.config.name, "num_classes": model.config.num_classes,
        "parameter_count": int(model.count_params()),
        "mrcnn_tf_version": mrcnn_tf.__version__, "keras_version": keras.__version__,
        "tensorflow_version": tf.__version__,
        "date_saved": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
