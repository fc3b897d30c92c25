"""KerasHub's conventions for MaskRCNN: `from_preset`, `save_to_preset`, `presets`, and
`compile()` with the model's own optimizer (`mrcnn_tf.load`, for any saved model, is in
loading.py, above the model class).

    model = MaskRCNN.from_preset("coco_r50_fpn", num_classes=3)   # a named architecture
    model = MaskRCNN.from_preset("runs/shapes")                    # a preset directory
    model.save_to_preset("presets/shapes")

Where this differs from KerasHub: a preset *name* is an architecture and recipe (a `Config`
of `mrcnn_tf.config.PRESETS`) with random weights, or ImageNet backbone weights when the
preset names them; weights trained on a dataset come as preset *directories* (what
`save_to_preset`, `mrcnn-tf train`, `import-weights` and `export --format preset` write).
Nothing is downloaded from a model hub (no kaggle:// or hf:// handles), and the model is one
Keras model with its preprocessing inside (no separate Backbone / Preprocessor objects).
"""

from __future__ import annotations

import os
import re
from typing import Any, Optional, Sequence

import keras

from mrcnn_tf.config import PRESETS, get_config
from mrcnn_tf.modeling import preset_files


def _summary(function) -> str:
    """A preset function's docstring up to its first ": " or sentence end."""
    text = " ".join((function.__doc__ or "").split())
    # A sentence ends at ". " before a capital letter ("et al., 2019" and "0..255" do not).
    match = re.search(r": |\.\s+(?=[A-Z])|\.$", text)
    return text[:match.start()] if match else text


class _PresetsProperty:
    """`MaskRCNN.presets`: {name: one-line description} of the named presets."""

    def __get__(self, instance, owner):
        return {name: _summary(make) for name, make in PRESETS.items()}


class Task:
    """Mixed into MaskRCNN (before keras.Model): KerasHub's Task conventions, and the model's
    own files (`save`, `save_weights`, `save_to_preset` refuse a model never built)."""

    presets = _PresetsProperty()

    @classmethod
    def from_preset(cls, preset: str | os.PathLike, load_weights: bool = True,
                    class_names: Optional[Sequence[str]] = None,
                    category_ids: Optional[Sequence[int]] = None, **config_overrides: Any):
        """A built model from a preset name or a preset directory.

        Args:
          preset: a name of `MaskRCNN.presets` (exact names win; write "./name" for a local
            folder called like one) or a preset directory (`modeling.preset_files`).
          load_weights: False gives random weights everywhere (no backbone weights either).
            With a name, True loads what the preset's `backbone_weights` names (keras.applications
            downloads "imagenet" once); with a directory, its weights.
          class_names, category_ids: the classes 1..K (default: the directory's label map, or
            class_1..class_K). Names of another count than the directory's mean new classes
            (num_classes follows them): every weight is loaded but the class-specific output
            layers, which start fresh, ready to fine-tune.
          **config_overrides: `Config` fields to change (num_classes=5, score_threshold=0.3).

        Raises:
          ValueError: one line: an unknown name, a directory missing a file, weights made for
            another architecture, backbone weights that could not be fetched.
        """
        text = os.fspath(preset)
        if text.startswith(("kaggle://", "hf://", "http://", "https://", "gs://")):
            raise ValueError(f"preset {text}: remote presets are not fetched; give a preset "
                             f"name ({', '.join(sorted(PRESETS))}) or a local preset directory")
        if text in PRESETS:
            return _from_name(cls, text, load_weights, class_names, category_ids,
                              config_overrides)
        if not os.path.exists(text):
            raise ValueError(f"preset {text!r}: neither a preset name (expected one of "
                             f"{', '.join(sorted(PRESETS))}) nor an existing directory")
        return _from_dir(cls, text, load_weights, class_names, category_ids, config_overrides)

    def save_to_preset(self, preset_dir: str | os.PathLike) -> str:
        """Writes config.json, label_map.json, model.weights.h5 and metadata.json to
        `preset_dir` (see `preset_files.save_to_preset`); returns its path."""
        return preset_files.save_to_preset(self, preset_dir)

    def compile(self, optimizer="auto", **kwargs):
        """`keras.Model.compile`; optimizer "auto" (the default, as in KerasHub) is the
        config's SGD with warmup and step decay (`modeling.optimizer.make_optimizer`)."""
        if isinstance(optimizer, str) and optimizer == "auto":
            from mrcnn_tf.modeling.optimizer import make_optimizer  # noqa: PLC0415
            optimizer = make_optimizer(self.config)
        return super().compile(optimizer=optimizer, **kwargs)


    def save(self, filepath, *args, **kwargs):
        """`keras.Model.save`, refused for a model that was never built: it holds no weights
        yet, so the file would load later with fresh random ones and nothing would say so."""
        self._check_built(f"MaskRCNN.save({filepath!r})")
        return super().save(filepath, *args, **kwargs)

    def save_weights(self, filepath, *args, **kwargs):
        """`keras.Model.save_weights`, refused like `save` for a model never built."""
        self._check_built(f"MaskRCNN.save_weights({filepath!r})")
        return super().save_weights(filepath, *args, **kwargs)

    def _check_built(self, what):
        if not self.built:
            raise ValueError(f"{what}: the model was never built, so it holds no weights to "
                             "save; call model.build() (or run it once) first")

def _from_name(cls, name, load_weights, class_names, category_ids, overrides):
    if class_names is not None and "num_classes" not in overrides:
        overrides = {**overrides, "num_classes": len(class_names)}
    config = get_config(name, **overrides)
    if not load_weights:
        config = config.replace(backbone_weights=None)
    try:
        model = cls(config, class_names=class_names, category_ids=category_ids)
    except ValueError:
        raise
    except Exception as error:  # noqa: BLE001 (keras.applications' download raises Exception)
        if config.backbone_weights is None:
            raise
        detail = " ".join(str(error).split())[:300]
        raise ValueError(f"preset {name!r}: backbone_weights={config.backbone_weights!r} "
                         f"could not be loaded ({detail}); pass load_weights=False for random "
                         "weights, or backbone_weights='PATH' to a local weights file") from error
    model.build()
    return model


def _from_dir(cls, path, load_weights, class_names, category_ids, overrides):
    preset = preset_files.read_preset_dir(path, need_weights=load_weights)
    if class_names is not None and "num_classes" not in overrides:
        overrides = {**overrides, "num_classes": len(class_names)}
    config = preset.config.replace(**overrides) if overrides else preset.config
    new_classes = (config.num_classes != preset.config.num_classes
                   or config.num_keypoints != preset.config.num_keypoints)
    if not new_classes:
        class_names = preset.label_map.names if class_names is None else class_names
        category_ids = preset.label_map.dataset_ids if category_ids is None else category_ids
    if not load_weights:
        config = config.replace(backbone_weights=None)
    model = cls(config, class_names=class_names, category_ids=category_ids,
                load_backbone_weights=False)
    model.build()
    if load_weights:
        preset_files.load_preset_weights(model, preset, new_classes)
    return model
