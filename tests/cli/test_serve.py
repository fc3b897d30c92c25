"""`mrcnn-tf serve-client` (mrcnn_tf/cli/serve.py): inputs that match no image file end in one
line. The client itself is tested in tests/test_serving_client.py."""

from helpers import run_cli


def test_serve_client_names_inputs_that_match_nothing(tmp_path):
    result = run_cli("serve-client", "--inputs", str(tmp_path / "nothing-*.png"))
    assert result.returncode == 2
    assert "matches no image file" in result.stderr and "Traceback" not in result.stderr
