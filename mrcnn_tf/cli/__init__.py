"""The `mrcnn-tf` command line: one module per subcommand, dispatched by `main`."""


def run():
    """Console-script entry point (imports TensorFlow only once a subcommand needs it)."""
    from mrcnn_tf.cli.main import run as run_main  # noqa: PLC0415
    run_main()
