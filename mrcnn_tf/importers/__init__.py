"""Importers of weights trained by other frameworks.

- `torchvision_maskrcnn`: torchvision's `maskrcnn_resnet50_fpn` (v1) state dicts
  (`mrcnn-tf import-weights --from torchvision ...`); needs the optional extra
  `pip install mrcnn-tf[torch]` only to read the `.pth` file.
"""
