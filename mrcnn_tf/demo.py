"""The demo: train `shapes_tiny` on synthetic shapes, evaluate with COCO metrics, draw, save,
export.

Everything a first-time user needs to see the whole life of a model on a laptop CPU:
train with `model.fit` (Keras progress bar), evaluate on a separate held-out synthetic set with
pycocotools, write overlay PNGs of the predictions, save the model as a `.keras` file, and
export it as a SavedModel for TF Serving and a builtin-ops TFLite file.

With the `shapes_keypoints_tiny` config it is the same for Keypoint R-CNN on synthetic houses
(six named keypoints, no masks): keypoint (OKS) AP instead of mask AP, poses on the overlays.
"""

import os
import time

import keras
import numpy as np
from absl import logging

from mrcnn_tf import visualize
from mrcnn_tf.config import get_config
from mrcnn_tf.data import pipeline
from mrcnn_tf.data.synthetic import synthetic_set_for
from mrcnn_tf.evaluation import coco_eval, evaluator
from mrcnn_tf.export.saved_model import export_saved_model
from mrcnn_tf.export.tflite import export_tflite
from mrcnn_tf.io_utils import write_json_atomic, write_png_atomic
from mrcnn_tf.modeling.mask_rcnn import MaskRCNN
from mrcnn_tf.modeling.optimizer import make_optimizer

# Different seeds keep the evaluation images out of the training set.
TRAIN_SEED = 0
EVAL_SEED = 1000


def train_dataset(config, num_images, batch_size, seed=TRAIN_SEED):
    """Synthetic examples (the config's set: shapes, or keypoint houses) generated once and
    cached, then shuffled, flipped and batched."""
    raw = synthetic_set_for(config).dataset(num_images, seed, config.image_max_size).cache()
    return pipeline.make_training_dataset(raw, config, batch_size, shuffle=True, augment=True,
                                          seed=seed)


def draw_predictions(examples, predictions, class_names, out_dir, count=8,
                     score_threshold=0.5, zoom=2, skeleton=()):
    """Writes one overlay PNG per image and a grid of them; returns the grid's path.

    Images are enlarged `zoom` times (nearest neighbour; masks, boxes and keypoints with them)
    before drawing, so labels stay readable on small synthetic images. Masks are drawn when
    the predictions have them, poses (with `skeleton`) when they have keypoints.
    """
    os.makedirs(out_dir, exist_ok=True)
    tiles = []
    for example, prediction in list(zip(examples, predictions))[:count]:
        image = np.repeat(np.repeat(example["image"], zoom, axis=0), zoom, axis=1)
        masks = prediction.get("masks")
        if masks is not None:
            masks = np.repeat(np.repeat(masks, zoom, axis=1), zoom, axis=2)
        keypoints = prediction.get("keypoints")
        if keypoints is not None:
            # Continuous coordinates scale exactly with a nearest-neighbour zoom.
            keypoints = keypoints * np.array([zoom, zoom, 1.0], np.float32)
        overlay = visualize.draw_instances(
            image, prediction["boxes"] * zoom, prediction["class_ids"],
            prediction["scores"], masks, class_names, score_threshold=score_threshold,
            keypoints=keypoints, skeleton=skeleton)
        write_png_atomic(os.path.join(out_dir, f"image_{int(example['image_id']):04d}.png"),
                         overlay)
        tiles.append(overlay)
    grid_path = os.path.join(out_dir, "grid.png")
    write_png_atomic(grid_path, visualize.make_grid(tiles, columns=4, padding=2))
    return grid_path


def save_model(model, path):
    """Saves a `.keras` file through a temporary name, so a kill never leaves half a file."""
    tmp = path + ".tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)


def run(out_dir, steps=None, train_images=2000, eval_images=200, batch_size=None,
        seed=TRAIN_SEED, config=None, config_overrides=None):
    """Trains, evaluates, draws and saves. Returns the evaluation metrics dict.

    Args:
      out_dir: where model.keras, metrics.json, predictions/ and export/ (saved_model/N/,
        model.tflite) are written.
      steps: training steps (default: config.total_steps).
      train_images: distinct synthetic training images (cached in memory).
      eval_images: held-out images for COCO evaluation.
      batch_size: images per step (default: config.batch_size).
      config: the model's Config (default: the `shapes_tiny` preset); config_overrides: fields
        to replace in it.
    """
    config = (config or get_config("shapes_tiny")).replace(**(config_overrides or {}))
    steps = config.total_steps if steps is None else steps
    batch_size = config.batch_size if batch_size is None else batch_size
    for name, value in (("steps", steps), ("batch_size", batch_size),
                        ("train_images", train_images), ("eval_images", eval_images)):
        if value < 1:
            raise ValueError(f"--{name}={value}: expected an integer >= 1")
    if batch_size > train_images:
        raise ValueError(f"--batch_size={batch_size}: expected at most --train_images="
                         f"{train_images}")
    keras.utils.set_random_seed(seed)
    os.makedirs(out_dir, exist_ok=True)
    synthetic = synthetic_set_for(config)
    class_names = list(synthetic.class_names)
    label_map = coco_eval.LabelMap.from_names(class_names)

    model = MaskRCNN(config, class_names=class_names)
    model.compile(optimizer=make_optimizer(config, batch_size=batch_size))
    dataset = train_dataset(config, train_images, batch_size, seed=seed)
    # Ten epochs (fewer for tiny runs) so the progress bar shows how the losses move.
    epochs = min(10, steps)
    steps_per_epoch = -(-steps // epochs)
    steps = epochs * steps_per_epoch
    logging.info("training %s for %d steps of %d images", config.name, steps, batch_size)
    start = time.time()
    # shuffle=False: the dataset shuffles itself (Keras cannot shuffle a tf.data.Dataset).
    model.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, verbose=1,
              shuffle=False)
    train_seconds = time.time() - start

    examples = synthetic.make_arrays(eval_images, EVAL_SEED, config.image_max_size)
    start = time.time()
    shown = []  # the first few (example, prediction) pairs, drawn below

    def keep_for_drawing(example, prediction):
        if len(shown) < 8:
            shown.append((example, prediction))

    metrics = evaluator.evaluate_model(model, examples, label_map,
                                       on_prediction=keep_for_drawing)
    eval_seconds = time.time() - start
    grid = draw_predictions([ex for ex, _ in shown], [p for _, p in shown], class_names,
                            os.path.join(out_dir, "predictions"),
                            skeleton=config.keypoint_skeleton)
    save_model(model, os.path.join(out_dir, "model.keras"))
    start = time.time()
    saved_model_dir = export_saved_model(model, os.path.join(out_dir, "export", "saved_model"))
    tflite = export_tflite(model, os.path.join(out_dir, "export", "model.tflite"))
    export_seconds = time.time() - start

    summary = {
        "train_seconds": round(train_seconds, 1),
        "eval_seconds": round(eval_seconds, 1),
        "export_seconds": round(export_seconds, 1),
        "saved_model": saved_model_dir,
        "tflite": tflite["path"],
        "steps": steps,
        "batch_size": batch_size,
        **{k: v for k, v in metrics.items() if not k.endswith("per_category")},
    }
    write_json_atomic(os.path.join(out_dir, "metrics.json"), summary, indent=2)
    print(f"\ntrained {steps} steps in {train_seconds:.0f} s; evaluated {eval_images} "
          f"held-out images in {eval_seconds:.0f} s")
    for kind, label in (("segm", "mask"), ("keypoints", "keypoint (OKS)"), ("bbox", "box")):
        if f"{kind}/AP" in metrics:
            print(f"{label} AP@[.5:.95] {metrics[f'{kind}/AP']:.3f}  "
                  f"AP@0.5 {metrics[f'{kind}/AP50']:.3f}")
    print(f"overlays: {grid}\nmodel: {os.path.join(out_dir, 'model.keras')}")
    print(f"exported in {export_seconds:.0f} s: SavedModel {saved_model_dir}, TFLite "
          f"{tflite['path']} ({tflite['size_bytes'] / 1e6:.1f} MB)")
    return summary
