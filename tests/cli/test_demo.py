"""`mrcnn-tf demo` (mrcnn_tf/cli/demo.py): a bad flag value ends in one line. What the demo
itself writes is tested in tests/test_demo.py."""

from helpers import run_cli


def test_bad_flag_value_exits_2_without_traceback(tmp_path):
    result = run_cli("demo", "--out", str(tmp_path), "--batch_size", "0")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "batch_size" in result.stderr
    assert "Traceback" not in result.stderr
