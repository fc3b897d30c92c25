"""Importers of weights trained by other frameworks.

torchvision's `maskrcnn_resnet50_fpn` (v1 and v2) and `keypointrcnn_resnet50_fpn` state dicts
(`mrcnn-tf import-weights --from torchvision --arch ...`); needs the optional extra
`pip install mrcnn-tf[torch]` only to read the `.pth` file:

- `torchvision_weights`: the entry points, `convert` (state dict -> built model) and
  `import_weights` (.pth -> model folder), and `ARCHITECTURES`.
- `torchvision_maskrcnn`: Mask R-CNN's tensors -> our variables (backbone, FPN, RPN, box and
  mask heads).
- `torchvision_keypointrcnn`: Keypoint R-CNN's (the same detector plus the keypoint head).
- `torch_checkpoint`: reading the `.pth` file; torchvision's key names, old and new.
- `torch_layers`: torch -> Keras layouts of each layer kind (conv, linear, BatchNorm, ...).
"""
