"""The command line of `python -m benchmarks`: the task first, then its own arguments.

    python -m benchmarks --list                 # every task, one line each
    python -m benchmarks all                    # the whole suite (an hour or more on 2 cores)
    python -m benchmarks all --smoke --out /tmp/b/results.json
    python -m benchmarks inference --sizes 512 --repeats 2
    python -m benchmarks keypoints --smoke
    python -m benchmarks TASK --help            # one task's arguments

The tasks are listed in benchmarks/registry.py. Only the chosen task's module is
imported, so listing them, or starting a benchmark's child process, imports no framework.
"""

import argparse
import functools
import importlib
import shlex
import sys

from benchmarks import registry, worker

PROG = "python -m benchmarks"
USAGE = f"usage: {PROG} [--list] TASK [TASK ARGUMENTS]  ({PROG} TASK --help for those)"


def listing():
    """One line per task: its name and what it does."""
    width = max(len(task.name) for task in registry.TASKS)
    return "\n".join(f"{task.name:<{width}}  {task.description}" for task in registry.TASKS)


def _entry(task):
    """(add_arguments, main) of `task`: a suite benchmark takes the suite's arguments and
    runs alone in the suite; a task of its own brings both from its module."""
    if isinstance(task, registry.Benchmark):
        from benchmarks import suite, suite_flags  # noqa: PLC0415 (a suite benchmark chosen)
        return suite_flags.add_arguments, functools.partial(suite.main, names=[task.name])
    module = importlib.import_module(task.module)
    return module.add_arguments, module.main


def parse(argv):
    """(the task's main, its parsed arguments, its parser) of a command line whose first word
    names a task; args.command is the command line as typed, for the records. Exits 2 on a
    usage error (an unknown task: one line naming it and the known ones)."""
    task = registry.find(argv[0])
    if task is None:
        # One line, naming the task asked for and every known one.
        print(f"{PROG}: error: unknown task {argv[0]!r}; known tasks: "
              f"{', '.join(registry.NAMES)}", file=sys.stderr)
        raise SystemExit(2)
    add_arguments, main = _entry(task)
    parser = argparse.ArgumentParser(prog=f"{PROG} {task.name}", description=task.description)
    add_arguments(parser)
    args = parser.parse_args(argv[1:])
    args.command = f"{PROG} {task.name} " + shlex.join(argv[1:])
    return main, args, parser


def main(argv=None):
    """Runs the task named first in `argv` (default sys.argv[1:]); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [worker.COMMAND]:  # a child process that worker.run_worker started
        return worker.main(argv[1:])
    if argv[:1] == ["--list"]:
        print(listing())
        return 0
    if not argv or argv[0] in ("-h", "--help"):
        print(f"{USAGE}\n\nTasks:\n{listing()}", file=sys.stdout if argv else sys.stderr)
        return 0 if argv else 2
    if argv[0].startswith("-"):
        print(f"{USAGE}\n{PROG}: error: expected a task first, got {argv[0]!r}",
              file=sys.stderr)
        return 2
    task_main, args, parser = parse(argv)
    try:
        return task_main(args)
    except registry.UsageError as error:
        parser.error(str(error))  # exits 2
