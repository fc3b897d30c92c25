"""`mrcnn-tf make-tfrecords` (mrcnn_tf/cli/data.py): malformed annotations end in one line.
A run that writes shards is in test_evaluate.py, which evaluates on the same COCO folders.

Run in this process (`mrcnn_tf.cli.main.run`): the file is refused before anything is
written, and a fresh process would spend TensorFlow's start-up on one line."""

from helpers import run_inprocess


def test_malformed_annotations_exit_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, _, err = run_inprocess(capsys, "make-tfrecords", "--annotations", str(bad),
                                 "--images", str(tmp_path), "--out", str(tmp_path / "x"))
    assert code == 2
    assert "bad.json" in err and "Traceback" not in err
