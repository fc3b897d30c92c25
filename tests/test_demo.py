"""The demo (mrcnn_tf/demo.py): a short run writes the model, metrics, overlays and exports,
and the keypoint demo draws poses without masks."""

import json
import os

from mrcnn_tf import demo


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
