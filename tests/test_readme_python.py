"""The README's "In Python" example runs as written: on a tiny synthetic COCO folder, with the
shapes_tiny preset instead of R50 and one step instead of 60,000."""

import os
import re
import shutil

import numpy as np

from mrcnn_tf.data import shapes

README = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "README.md")


def readme_python_example():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    section = text[text.index("\n## In Python\n"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_python_example_runs(tmp_path, monkeypatch):
    code = readme_python_example()
    small = (code.replace('"coco_r50_fpn_scratch"', '"shapes_tiny"')
             .replace("epochs=12, steps_per_epoch=5000", "epochs=1, steps_per_epoch=1"))
    # The substitutions found their text: the README still says what this test runs.
    assert '"shapes_tiny"' in small and "epochs=1, steps_per_epoch=1" in small
    for split, count in (("train", 4), ("val", 2)):
        annotations, images = shapes.write_shapes_coco(str(tmp_path / split), count,
                                                       seed=len(split), image_size=64)
        shutil.move(annotations, tmp_path / f"{split}.json")
        shutil.move(images, tmp_path / f"{split}_images")
        shutil.rmtree(tmp_path / split)
        shutil.move(tmp_path / f"{split}_images", tmp_path / split)
    monkeypatch.chdir(tmp_path)
    namespace = {"image": (np.random.RandomState(0).rand(48, 80, 3) * 255).astype(np.uint8)}
    exec(compile(small, "README.md (In Python)", "exec"), namespace)  # noqa: S102
    detections = namespace["detections"]
    assert len(detections) == 1 and detections[0]["masks"].shape[1:] == (48, 80)
    assert sorted(os.listdir(tmp_path / "presets" / "mine")) == [
        "config.json", "label_map.json", "metadata.json", "model.weights.h5"]
    assert namespace["model"].class_names == ["square", "circle", "triangle"]
