"""`mrcnn-tf evaluate` (mrcnn_tf/cli/evaluate.py) on COCO folders that `mrcnn-tf
make-tfrecords` first writes shards of, with --plots; a missing flag and an unwritable --plots
folder named."""

import json

from helpers import assert_one_line_error, run_cli, run_inprocess


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
                     "--results", str(tmp_path / "results.json"),
                     "--plots", str(tmp_path / "plots"), "--score_threshold", "0.0")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "COCO segm evaluation" in result.stdout
    assert (tmp_path / "results.json").exists()
    written = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert written == sorted(["pr_bbox_iou50.png", "pr_bbox_iou75.png", "pr_segm_iou50.png",
                              "pr_segm_iou75.png", "errors.png", "worst_images.png",
                              "overview.png", "plots.json"])
    assert "plots: 8 files in" in result.stdout
    numbers = json.loads((tmp_path / "plots" / "plots.json").read_text())
    assert set(numbers["errors"]) == {"bbox", "segm"}
    # An untrained model: every image has errors, so the grid shows all 4 (read again with
    # CocoDataset.load_example).
    shown = numbers["worst_images"]["images"]
    assert len(shown) == 4 and all(im["fp"] + im["fn"] > 0 for im in shown)
    assert all(im["file_name"].endswith(".png") for im in shown)


def test_unwritable_plots_folder_is_named_before_the_model_loads(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, _, err = run_inprocess(capsys, "evaluate", "--annotations", "a.json", "--images",
                                 "images", "--weights", str(tmp_path / "none.keras"),
                                 "--plots", str(blocker / "plots"))
    assert_one_line_error(code, err, f"--plots={blocker / 'plots'}", "not a writable folder")


def test_missing_flag_is_named():
    result = run_cli("evaluate", "--images", "x")
    assert result.returncode == 2
    assert "--annotations" in result.stderr and "--weights" in result.stderr
