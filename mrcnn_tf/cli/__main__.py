"""`python -m mrcnn_tf.cli SUBCOMMAND ...`, the same as `mrcnn-tf SUBCOMMAND ...`."""

from mrcnn_tf.cli.main import run

if __name__ == "__main__":
    run()
