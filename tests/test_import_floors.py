"""The package is a stack of floors; a module imports only from its own floor or below.

This is the one place the order is written (README's "What is inside" describes the rooms):

  1  ops/ (pure TensorFlow), keypoint_spec, labels (LabelMap), io_utils, postprocess (keep,
     paste, label: the one finishing of detections), failpoints (named kill moments for tests),
     progress (a progress line on stderr)
  2  layers/ (Keras layers over ops), config
  3  data/ (readers, schema, pipeline), visualize
  4  modeling/ (backbones, FPN, heads, MaskRCNN), evaluation/
  5  prediction, video (predict on video files), training/, export/, inspection, importers/,
     serving_client, ablation/
  6  cli/, demo
  7  the package root (mrcnn_tf/__init__.py): the public names (MaskRCNN, load, CocoDataset,
     ...), each loaded from its module on first use; no module imports them from the root
  (benchmarks/ and experiments/ stand above the package and may import any of it)

Imports inside functions count too: a lazy import is still a dependency.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "mrcnn_tf")
FLOORS = {
    1: ("ops", "keypoint_spec", "labels", "io_utils", "postprocess", "failpoints", "progress"),
    2: ("layers", "config"),
    3: ("data", "visualize"),
    4: ("modeling", "evaluation"),
    5: ("prediction", "video", "training", "export", "inspection", "importers",
        "serving_client", "ablation"),
    6: ("cli", "demo"),
}
ROOM_FLOOR = {room: floor for floor, rooms in FLOORS.items() for room in rooms}


def floor_of(module):
    """The floor of a dotted module name under mrcnn_tf ("mrcnn_tf.ops.boxes" -> 1); 0 for
    the package root; None for a room no floor lists."""
    parts = module.split(".")
    if parts[0] != "mrcnn_tf":
        raise ValueError(f"{module}: not in the package")
    if len(parts) == 1:
        return 0
    return ROOM_FLOOR.get(parts[1])


def package_imports(source, module):
    """The mrcnn_tf modules `source` (the text of `module`) imports, at any depth."""
    package = module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "mrcnn_tf"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] == "mrcnn_tf":
                # "from mrcnn_tf import labels" names a room; "from mrcnn_tf.x import y" a module
                found += [f"{base}.{a.name}" if base == "mrcnn_tf" else base for a in node.names]
    return found


def modules():
    for folder, _, files in os.walk(PACKAGE):
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                yield path, dotted.removesuffix(".__init__")


def upward_imports(items):
    """["A (floor a) imports B (floor b)"] for each import of a higher floor; `items` are
    (module, [imported modules])."""
    problems = []
    for module, imported in items:
        own = floor_of(module)
        for target in imported:
            if floor_of(target) is not None and own is not None and floor_of(target) > own:
                problems.append(f"{module} (floor {own}) imports {target} "
                                f"(floor {floor_of(target)})")
    return problems


def test_every_module_has_a_floor():
    assert [m for _, m in modules() if floor_of(m) is None] == []


def test_no_module_imports_from_a_higher_floor():
    items = []
    for path, module in modules():
        with open(path) as f:
            items.append((module, package_imports(f.read(), module)))
    assert sum(len(imported) for _, imported in items) > 100  # the walk saw the package
    assert upward_imports(items) == []


@pytest.mark.parametrize("source, module, expected", [
    ("from mrcnn_tf.modeling import losses\n", "mrcnn_tf.ops.keypoints",
     ["mrcnn_tf.ops.keypoints (floor 1) imports mrcnn_tf.modeling (floor 4)"]),
    ("def f():\n    import mrcnn_tf.evaluation.coco_eval\n", "mrcnn_tf.data.coco",
     ["mrcnn_tf.data.coco (floor 3) imports mrcnn_tf.evaluation.coco_eval (floor 4)"]),
    ("from mrcnn_tf import prediction\n", "mrcnn_tf.modeling.mask_rcnn",
     ["mrcnn_tf.modeling.mask_rcnn (floor 4) imports mrcnn_tf.prediction (floor 5)"]),
    ("from ..training import trainer\n", "mrcnn_tf.export.tflite", []),  # same floor
    ("from ..cli import common\n", "mrcnn_tf.export.tflite",
     ["mrcnn_tf.export.tflite (floor 5) imports mrcnn_tf.cli (floor 6)"]),
    ("from mrcnn_tf.ops import boxes\nimport numpy\n", "mrcnn_tf.cli.main", []),
])
def test_the_check_sees_upward_imports(source, module, expected):
    assert upward_imports([(module, package_imports(source, module))]) == expected


def test_no_module_imports_the_public_names_from_the_package_root():
    """The root re-exports names of every floor (`mrcnn_tf._EXPORTS`), so it stands above
    them all: a module importing `from mrcnn_tf import MaskRCNN` would reach up to it."""
    import mrcnn_tf  # noqa: PLC0415
    public = set(mrcnn_tf._EXPORTS)  # noqa: SLF001
    found = []
    for path, module in modules():
        with open(path) as f:
            for target in package_imports(f.read(), module):
                if target.split(".")[0] == "mrcnn_tf" and target.count(".") == 1 and (
                        target.split(".")[1] in public):
                    found.append(f"{module} imports {target}")
    assert found == []
    assert ("mrcnn_tf.MaskRCNN" in package_imports("from mrcnn_tf import MaskRCNN\n",
                                                    "mrcnn_tf.cli.main"))
