"""A loaded model made again under other settings: another config (the static-shapes copy the
TFLite export converts) or another Keras dtype policy (`--precision`), with the same weights.
"""

from mrcnn_tf.modeling.mask_rcnn import MaskRCNN


def rebuilt(model: MaskRCNN, config=None) -> MaskRCNN:
    """A new, built MaskRCNN of `config` (default: `model.config`) with `model`'s class names,
    category ids, name and weights. Its layers take the Keras global dtype policy in effect
    during the call.

    The config may change anything but the weights' structure (static shapes, the RoIAlign
    form, decoding rules). Both models are built by the same code, so their weights come in
    the same order; names and shapes are checked anyway, so that a divergence fails loudly
    instead of loading weights into the wrong layers.

    Raises:
      RuntimeError: the weights differ in count, path or shape (the first mismatches named).
    """
    copy = MaskRCNN(config or model.config, class_names=model.class_names,
                    category_ids=model.category_ids, name=model.name)
    copy.build()
    source, target = model.weights, copy.weights
    mismatch = [(s.path, t.path) for s, t in zip(source, target)
                if s.path != t.path or tuple(s.shape) != tuple(t.shape)]
    if len(source) != len(target) or mismatch:
        raise RuntimeError(f"rebuilt {model.name}: the new model has different weights "
                           f"({len(source)} vs {len(target)}; first mismatches {mismatch[:3]})")
    for s, t in zip(source, target):
        t.assign(s)
    return copy
