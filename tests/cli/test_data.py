"""`mrcnn-tf make-tfrecords` (mrcnn_tf/cli/data.py): malformed annotations end in one line.
A run that writes shards is in test_evaluate.py, which evaluates on the same COCO folders."""

from helpers import run_cli


def test_malformed_annotations_exit_2_with_one_line(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    result = run_cli("make-tfrecords", "--annotations", str(bad), "--images", str(tmp_path),
                     "--out", str(tmp_path / "x"))
    assert result.returncode == 2
    assert "bad.json" in result.stderr and "Traceback" not in result.stderr
