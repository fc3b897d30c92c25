"""`mrcnn-tf serve-client` (mrcnn_tf/cli/serve.py): inputs that match no image file end in one
line. The client itself is tested in tests/test_serving_client.py.

Run in this process (`mrcnn_tf.cli.main.run`): the refusal comes before any request or global
setting, and a fresh process would spend TensorFlow's start-up on one line."""

from helpers import run_inprocess


def test_serve_client_names_inputs_that_match_nothing(tmp_path, capsys):
    code, _, err = run_inprocess(capsys, "serve-client", "--inputs",
                                 str(tmp_path / "nothing-*.png"))
    assert code == 2
    assert "matches no image file" in err and "Traceback" not in err
