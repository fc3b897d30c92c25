"""`mrcnn-tf evaluate` (mrcnn_tf/cli/evaluate.py) on COCO folders that `mrcnn-tf
make-tfrecords` first writes shards of, and a missing flag named."""

from helpers import run_cli


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


def test_missing_flag_is_named():
    result = run_cli("evaluate", "--images", "x")
    assert result.returncode == 2
    assert "--annotations" in result.stderr and "--weights" in result.stderr
