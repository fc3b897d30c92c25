"""Checks before the first training step: a config that cannot learn is refused in one line.

Frozen layers keep the values they start with. Started from pretrained weights, that is the
point (Detectron2's FREEZE_AT, frozen BatchNorm statistics). Started from random weights, it
leaves a network that cannot learn: `norm="frozen_bn"` then holds identity statistics (mean
0, variance 1), so nothing normalizes the activations of 50 random layers (a class loss of
7,000 at step 1 and 45,000 at step 2 on three photos), and `freeze_at > 0` keeps a random
stem (and stages) that no gradient will ever fix.
"""

from __future__ import annotations

from typing import Optional

from mrcnn_tf.config import Config


def check_trainable(config: Config, init_weights: Optional[str] = None,
                    resumed: bool = False) -> None:
    """Refuses training `config` from random weights with frozen layers.

    Args:
      config: the run's config (`backbone_weights`, `norm`, `freeze_at`).
      init_weights: the run's --init_weights, if any (then the weights are not random).
      resumed: the run resumes a backup (its weights are no longer the random start; the
        check already ran when it started).

    Raises:
      ValueError: one line naming the frozen parts and the fixes: pretrained weights
        (`--override backbone_weights=imagenet` or `--init_weights`), or the from-scratch
        preset `coco_r50_fpn_scratch` (GroupNorm, nothing frozen).
    """
    if resumed or init_weights or config.backbone_weights is not None:
        return
    frozen = []
    if config.norm == "frozen_bn":
        frozen.append("norm='frozen_bn' (identity statistics: nothing normalizes the random "
                      "layers)")
    if config.freeze_at > 0:
        n = config.freeze_at
        stages = ("the stem" if n == 1 else "the stem and C2" if n == 2
                  else f"the stem and C2..C{n}")
        frozen.append(f"freeze_at={n} (frozen random: {stages})")
    if frozen:
        raise ValueError(
            f"config {config.name!r} trains from random weights (backbone_weights=None, no "
            f"--init_weights) with frozen layers: {'; '.join(frozen)}. Start from pretrained "
            "weights (--override backbone_weights=imagenet, or --init_weights), or train "
            "from scratch with --config coco_r50_fpn_scratch (GroupNorm, freeze_at=0) or "
            "--override norm=gn --override freeze_at=0")
