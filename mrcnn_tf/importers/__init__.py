"""Importers of weights trained by other frameworks.

- `torchvision_maskrcnn`: torchvision's `maskrcnn_resnet50_fpn` (v1 and v2) and
  `keypointrcnn_resnet50_fpn` state dicts (`mrcnn-tf import-weights --from torchvision
  --arch ...`); needs the optional extra `pip install mrcnn-tf[torch]` only to read the
  `.pth` file.
"""
