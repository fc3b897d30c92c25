"""`mrcnn-tf demo` (mrcnn_tf/cli/demo.py): a bad flag value ends in one line. What the demo
itself writes is tested in tests/test_demo.py.

Run in this process (`mrcnn_tf.cli.main.run`): the value is refused before the seed is set or
anything is written, and a fresh process would spend TensorFlow's start-up on one line."""

from helpers import run_inprocess


def test_bad_flag_value_exits_2_without_traceback(tmp_path, capsys):
    code, _, err = run_inprocess(capsys, "demo", "--out", str(tmp_path), "--batch_size", "0")
    assert code == 2, err[-2000:]
    assert "batch_size" in err
    assert "Traceback" not in err
