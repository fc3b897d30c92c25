"""`mrcnn-tf SUBCOMMAND [--flags]`: dispatch, per-subcommand help, one-line errors.

A user error (unknown subcommand, preset or flag, bad flag value, missing or malformed file,
unwritable output folder, weights made for another config) ends with one line on stderr and
exit code 2, never a traceback; a full disk (or file size limit) with one line naming the file
and exit code 1 (every writer writes to a temporary name and renames, so no file that looks
complete is left). `mrcnn-tf SUBCOMMAND --help` lists that subcommand's flags
with their defaults.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from mrcnn_tf.cli import (ablate, common, data, demo, evaluate, export,  # noqa: E402
                          import_weights, inspect, predict, serve, train)
from mrcnn_tf.io_utils import storage_full_message  # noqa: E402

FLAGS = flags.FLAGS
COMMANDS = {
    "train": train, "evaluate": evaluate, "predict": predict, "export": export,
    "inspect": inspect, "import-weights": import_weights, "demo": demo,
    "make-tfrecords": data, "serve-client": serve, "ablate": ablate,
}
HELP_FLAGS = ("--help", "-h", "--helpshort", "-help")


def usage() -> str:
    lines = ["usage: mrcnn-tf SUBCOMMAND [flags]   (mrcnn-tf SUBCOMMAND --help lists its flags)"]
    for name, module in COMMANDS.items():
        lines.append(f"  {name:<15} {module.SUMMARY}")
    return "\n".join(lines)


def command_help(name: str) -> str:
    """The subcommand's summary, usage line and every flag it reads with its default."""
    module = COMMANDS[name]
    lines = [f"mrcnn-tf {name}: {module.SUMMARY}", f"usage: mrcnn-tf {name} {module.USAGE}", "",
             "flags:"]
    for flag_name in module.FLAG_NAMES:
        flag = FLAGS[flag_name]
        default = flag.default_as_str or "None"
        lines.append(f"  --{flag_name}: {flag.help}\n      (default: {default})")
    return "\n".join(lines)


def main(argv):
    allowed = len(getattr(COMMANDS.get(argv[1]), "POSITIONAL_ARGS", ())) if len(argv) > 1 else 0
    common.POSITIONAL[:] = []
    if len(argv) > 1 and argv[1] in COMMANDS and 0 < len(argv) - 2 <= allowed:
        common.POSITIONAL[:] = argv[2:]
        argv = argv[:2]
    if len(argv) != 2 or argv[1] not in COMMANDS:
        if len(argv) > 2:
            problem = f"unexpected arguments {argv[2:]} (flags are written --name=value); "
        elif len(argv) == 2:
            problem = f"unknown subcommand {argv[1]!r}; "
        else:
            problem = ""
        print(f"mrcnn-tf: {problem}expected one of {list(COMMANDS)}\n{usage()}",
              file=sys.stderr)
        sys.exit(2)
    try:
        COMMANDS[argv[1]].main()
    except Exception as error:  # noqa: BLE001 (re-raised unless it is one of the two below)
        full = storage_full_message(error)
        if full is not None:  # a full disk is not the user's mistake: exit 1
            print(f"mrcnn-tf {argv[1]}: {full}", file=sys.stderr)
            sys.exit(1)
        if not isinstance(error, (ValueError, OSError)):
            raise
        print(f"mrcnn-tf {argv[1]}: {error}", file=sys.stderr)
        sys.exit(2)


def _flags_parser(argv):
    """absl's parser, with an unknown or malformed flag reported in one line (exit 2)."""
    try:
        return FLAGS(argv)
    except flags.Error as error:
        command = argv[1] if len(argv) > 1 else ""
        print(f"mrcnn-tf {command}: {error}".replace("  ", " "), file=sys.stderr)
        sys.exit(2)


def run(argv=None):
    argv = list(sys.argv if argv is None else argv)
    if len(argv) >= 2 and argv[1] in COMMANDS and any(a in HELP_FLAGS for a in argv[2:]):
        print(command_help(argv[1]))
        sys.exit(0)
    if len(argv) == 1 or argv[1] in HELP_FLAGS:
        print(usage())
        sys.exit(0 if len(argv) > 1 else 2)
    app.run(main, argv=argv, flags_parser=_flags_parser)


def run_experiment(path):
    """`python experiments/X.py [flags]`: the same as `mrcnn-tf train --config X.py [flags]`."""
    run(["mrcnn-tf", "train", "--config", path] + sys.argv[1:])


if __name__ == "__main__":
    run()
