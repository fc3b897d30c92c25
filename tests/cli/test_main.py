"""`mrcnn-tf` dispatch and help (mrcnn_tf/cli/main.py): an unknown subcommand ends in one
line, and every subcommand's --help lists its flags with their defaults."""

import subprocess
import sys

import pytest

from helpers import run_cli, run_inprocess
from mrcnn_tf.cli import main as cli_main


def test_unknown_subcommand_exits_2_with_one_line():
    result = run_cli("nope")
    assert result.returncode == 2
    assert "unknown subcommand 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", sorted(cli_main.COMMANDS))
def test_help_lists_every_flag_with_its_default(capsys, command):
    code, out, _ = run_inprocess(capsys, command, "--help")
    assert code == 0
    module = cli_main.COMMANDS[command]
    for name in module.FLAG_NAMES:
        assert f"--{name}:" in out, name
    defaults = [line for line in out.splitlines() if line.startswith("      (default: ")]
    assert len(defaults) == len(module.FLAG_NAMES)


def test_help_of_the_train_subcommand_in_a_real_process():
    result = subprocess.run([sys.executable, "-m", "mrcnn_tf.cli", "train", "--help"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert "--mixed_precision:" in result.stdout and "(default: 'float32')" in result.stdout
