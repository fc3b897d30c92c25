"""`mrcnn_tf.load(path)`: any saved model, whatever wrote it.

Above modeling/mask_rcnn.py (it builds MaskRCNN and registers it with Keras before a .keras
file is read); the model's own `from_preset` reads preset directories.
"""

from __future__ import annotations

import os
from typing import Any

from mrcnn_tf.modeling import preset_files, rebuild
from mrcnn_tf.modeling import weights as weight_files
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN


def load(path: str | os.PathLike, **config_overrides: Any):
    """The MaskRCNN saved at `path`: a preset directory (`from_preset`), a run folder or
    `import-weights` folder (its best.keras, else model.keras, else newest checkpoint), or a
    `.keras` file (Keras' safe mode: no code from the file runs). `config_overrides` change
    fields that leave the weights' shapes alone (score_threshold=0.3, detections_per_image=50).

    Raises:
      ValueError: one line naming the path and what was expected.
    """
    text = os.fspath(path)
    if os.path.isdir(text) and (preset_files.has_preset_weights(text)
                                or preset_files.is_saved_model_export(text)):
        # "./": a folder called like a preset name is still the folder.
        return MaskRCNN.from_preset(os.path.join(text, ""), **config_overrides)
    if text.endswith(".weights.h5"):
        raise ValueError(f"{text}: a weights file carries no config; put it in a preset "
                         f"directory beside {preset_files.CONFIG_FILE} and "
                         f"{preset_files.LABEL_MAP_FILE}, or build "
                         "MaskRCNN.from_preset(NAME) and call load_weights")
    try:
        model = weight_files.load_model(text, flag="load")
    except ValueError as error:
        raise ValueError(str(error).removeprefix("load=")) from None
    if config_overrides:
        model = rebuild.rebuilt(model, model.config.replace(**config_overrides))
    return model
