"""The command line and the demo it runs."""

import json
import os
import subprocess
import sys

from mrcnn_tf import demo


def run_cli(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "mrcnn_tf.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_unknown_subcommand_exits_2_with_one_line():
    result = run_cli("nope")
    assert result.returncode == 2
    assert "unknown subcommand 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_flag_value_exits_2_without_traceback(tmp_path):
    result = run_cli("demo", "--out", str(tmp_path), "--batch_size", "0")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "batch_size" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_writes_model_metrics_and_overlays(tmp_path):
    out = str(tmp_path / "demo")
    summary = demo.run(out, steps=2, train_images=8, eval_images=4, batch_size=2)
    for key in ("segm/AP", "segm/AP50", "bbox/AP", "bbox/AP50", "train_seconds"):
        assert key in summary
    with open(os.path.join(out, "metrics.json")) as f:
        assert json.load(f)["steps"] == 2
    assert os.path.getsize(os.path.join(out, "model.keras")) > 0
    assert os.path.exists(os.path.join(out, "predictions", "grid.png"))
    assert os.path.exists(os.path.join(summary["saved_model"], "saved_model.pb"))
    assert os.path.getsize(os.path.join(out, "export", "model.tflite")) > 0
    # Nothing half-written is left behind.
    assert not [name for name in os.listdir(out) if ".tmp" in name]


def test_make_tfrecords_and_evaluate_from_the_command_line(tmp_path):
    import glob

    import keras

    from mrcnn_tf.config import get_config
    from mrcnn_tf.data.shapes import write_shapes_coco
    from mrcnn_tf.modeling.mask_rcnn import MaskRCNN
    from mrcnn_tf.modeling.optimizer import make_optimizer

    annotations, images = write_shapes_coco(str(tmp_path / "data"), 4, seed=1, image_size=64)
    result = run_cli("make-tfrecords", "--annotations", annotations, "--images", images,
                     "--out", str(tmp_path / "rec" / "shapes"), "--shards", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(glob.glob(str(tmp_path / "rec" / "shapes-*-of-00002.tfrecord"))) == 2

    config = get_config("shapes_tiny", image_min_size=64, image_max_size=64,
                        score_threshold=0.0)
    keras.utils.set_random_seed(0)
    model = MaskRCNN(config, class_names=["square", "circle", "triangle"])
    model.build()
    # Compiled, as after training: a fresh process must find the learning rate schedule.
    model.compile(optimizer=make_optimizer(config))
    model.save(str(tmp_path / "model.keras"))
    result = run_cli("evaluate", "--annotations", annotations, "--images", images,
                     "--weights", str(tmp_path / "model.keras"),
                     "--results", str(tmp_path / "results.json"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "COCO segm evaluation" in result.stdout
    assert (tmp_path / "results.json").exists()


def test_malformed_annotations_exit_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = run_cli("make-tfrecords", "--annotations", str(bad), "--images", str(tmp_path),
                     "--out", str(tmp_path / "x"))
    assert result.returncode == 2
    assert "bad.json" in result.stderr and "Traceback" not in result.stderr


def test_missing_flag_is_named():
    result = run_cli("evaluate", "--images", "x")
    assert result.returncode == 2
    assert "--annotations" in result.stderr and "--weights" in result.stderr


def test_export_saved_model_from_the_command_line(tmp_path):
    import keras

    from mrcnn_tf.config import get_config
    from mrcnn_tf.modeling.mask_rcnn import MaskRCNN

    keras.utils.set_random_seed(0)
    config = get_config("shapes_tiny", image_min_size=64, image_max_size=64)
    model = MaskRCNN(config)
    model.build()
    model.save(str(tmp_path / "model.keras"))
    out = tmp_path / "exports" / "shapes"
    for version in ("1", "2"):
        result = run_cli("export", "--weights", str(tmp_path / "model.keras"), "--out", str(out))
        assert result.returncode == 0, result.stderr[-2000:]
        assert (out / version / "saved_model.pb").exists()
    result = run_cli("export", "--weights", str(tmp_path / "missing.keras"), "--out", str(out))
    assert result.returncode == 2 and "missing.keras" in result.stderr


def test_export_tflite_from_the_command_line(tmp_path):
    import keras

    from mrcnn_tf.config import get_config
    from mrcnn_tf.modeling.mask_rcnn import MaskRCNN

    keras.utils.set_random_seed(0)
    config = get_config("shapes_tiny", image_min_size=64, image_max_size=64)
    model = MaskRCNN(config)
    model.build()
    model.save(str(tmp_path / "model.keras"))
    out = tmp_path / "model.tflite"
    result = run_cli("export", "--weights", str(tmp_path / "model.keras"), "--out", str(out),
                     "--format", "tflite", "--quantization", "float16")
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.stat().st_size > 0 and "float16" in result.stdout


def test_serve_client_names_inputs_that_match_nothing(tmp_path):
    result = run_cli("serve-client", "--inputs", str(tmp_path / "nothing-*.png"))
    assert result.returncode == 2
    assert "matches no image file" in result.stderr and "Traceback" not in result.stderr


def test_demo_draws_poses_without_masks(tmp_path):
    """The keypoint demo's overlays: poses drawn, no mask tint, from predictions that have
    keypoints and no masks."""
    import numpy as np

    from mrcnn_tf.data import keypoint_shapes

    example = keypoint_shapes.generate_keypoint_example(0, seed=0, image_size=64)
    n = len(example["boxes"])
    keypoints = example["keypoints"].copy()
    keypoints[..., 2] = 0.9  # every keypoint predicted with a high score
    prediction = {"boxes": example["boxes"], "class_ids": example["class_ids"],
                  "scores": np.full(n, 0.99, np.float32), "keypoints": keypoints}
    bare = dict(prediction, keypoints=None)
    grid = demo.draw_predictions([example], [prediction], ["house"], str(tmp_path / "kp"),
                                 skeleton=keypoint_shapes.SKELETON)
    demo.draw_predictions([example], [bare], ["house"], str(tmp_path / "plain"))
    import cv2
    with_pose = cv2.imread(os.path.join(str(tmp_path / "kp"), "image_0000.png"))
    without = cv2.imread(os.path.join(str(tmp_path / "plain"), "image_0000.png"))
    assert os.path.exists(grid) and with_pose.shape == (128, 128, 3)
    # Zoom 2: keypoint (y, x) lands on pixel floor(2y), floor(2x) of the overlay.
    y, x = (example["keypoints"][0, 5, :2] * 2).astype(int)
    assert np.any(with_pose[y, x] != without[y, x])
    assert (with_pose != without).any(axis=2).mean() < 0.5  # poses, not a full repaint
