"""The five studies of `mrcnn-tf ablate`: which config fields each varies, and the paper's
numbers for its variants (He et al., "Mask R-CNN", 2017, Table 2; COCO minival, approximate).

Every variant trains from scratch on the synthetic small shapes with the
`small_shapes_ablation` preset and differs from it only in its `changes`.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

from mrcnn_tf.config import Config, get_config

BASE_PRESET = "small_shapes_ablation"


@dataclasses.dataclass(frozen=True)
class Variant:
    """One arm of a study: its label, the config fields it changes and the paper's mask AP
    for it (None where the paper has no such row)."""

    label: str
    changes: Tuple[Tuple[str, object], ...]
    paper_mask_ap: Optional[float] = None

    def config(self, base: Config) -> Config:
        return base.replace(name=f"{base.name}-{self.label}", **dict(self.changes))


@dataclasses.dataclass(frozen=True)
class Study:
    """A named comparison: its question, its variants and where the paper's numbers are
    from."""

    name: str
    question: str
    variants: Tuple[Variant, ...]
    paper_source: str

    def base_config(self) -> Config:
        return get_config(BASE_PRESET)


STUDIES: Dict[str, Study] = {study.name: study for study in (
    Study("roi_pooler",
          "How much does rounding a box to the feature grid cost the masks?",
          (Variant("roi_pool", (("roi_pooler", "roi_pool"),), 26.9),
           Variant("roi_warp", (("roi_pooler", "roi_warp"),), 27.2),
           Variant("roi_align_v1", (("roi_pooler", "roi_align_v1"),), 30.3),
           Variant("roi_align", (("roi_pooler", "roi_align"),))),
          "Table 2c, ResNet-50-C4 (stride 16); the paper's RoIAlign has no half-pixel offset "
          "(roi_align_v1 here)"),
    Study("mask_upsample",
          "Does a learned transposed convolution recover more than fixed interpolation?",
          (Variant("deconv", (("mask_upsample", "deconv"),)),
           Variant("bilinear", (("mask_upsample", "bilinear"),)),
           Variant("nearest", (("mask_upsample", "nearest"),))),
          "not in the paper: the article's argument"),
    Study("mask_loss",
          "Per-class sigmoid masks against a per-pixel softmax over classes.",
          (Variant("sigmoid", (("mask_loss", "sigmoid"),), 30.3),
           Variant("softmax", (("mask_loss", "softmax"),), 24.8)),
          "Table 2b, ResNet-50-C4"),
    Study("mask_classes",
          "One mask per class against one class-agnostic mask.",
          (Variant("class_specific", (("mask_class_agnostic", False),), 30.3),
           Variant("class_agnostic", (("mask_class_agnostic", True),), 29.7)),
          "Section 4.2 (class-agnostic masks), ResNet-50-C4"),
    Study("mask_head",
          "A fully convolutional mask head against an MLP.",
          (Variant("fcn", (("mask_head_type", "fcn"),), 33.6),
           Variant("mlp", (("mask_head_type", "mlp"), ("mask_head_fc_dim", 512)), 31.5)),
          "Table 2e, ResNet-50-FPN"),
)}


def get_study(name: str) -> Study:
    """The study called `name`; ValueError naming the known ones otherwise."""
    if name not in STUDIES:
        raise ValueError(f"--study={name}: expected one of {', '.join(STUDIES)}")
    return STUDIES[name]
