"""`python -m benchmarks`, the one entry point: `--list` names every task with a line of its
own, an unknown task ends in one line naming it and the known ones (exit 2), and every task's
module has the shape the registry promises (read from the source: no framework imported)."""

import ast
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from benchmarks import registry, worker  # noqa: E402


def _benchmarks(*args):
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=60)


def _defined(module):
    """The names a module's source defines at top level (functions, classes, assignments)."""
    path = REPO.joinpath(*module.split(".")).with_suffix(".py")
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names


def test_list_names_every_task_with_its_description():
    process = _benchmarks("--list")
    assert process.returncode == 0, process.stderr
    lines = process.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(registry.NAMES)
    for line, task in zip(lines, registry.TASKS):
        assert line.endswith(task.description), line
    assert {"all", "keypoints", "gpu", "precision"} <= set(registry.NAMES)
    assert set(registry.SUITE_NAMES) <= set(registry.NAMES)


def test_an_unknown_task_exits_2_naming_it_and_the_known_tasks():
    process = _benchmarks("no_such_task", "--smoke")
    assert process.returncode == 2
    [line] = process.stderr.strip().splitlines()
    assert "unknown task 'no_such_task'" in line
    for name in registry.NAMES:
        assert name in line, name
    assert not process.stdout


def test_no_task_is_a_usage_error_that_lists_the_tasks():
    process = _benchmarks()
    assert process.returncode == 2
    assert "usage: python -m benchmarks" in process.stderr
    assert all(name in process.stderr for name in registry.NAMES)


@pytest.mark.parametrize("task", registry.TASKS, ids=lambda task: task.name)
def test_every_task_module_has_the_uniform_shape(task):
    """A suite benchmark's module defines run(spec); a task of its own, add_arguments(parser)
    and main(args), and run(...) for its numbers."""
    wanted = {"run"} if isinstance(task, registry.Benchmark) else {"add_arguments", "main"}
    if task.name != "all":  # `all` runs the suite's benchmarks (benchmarks/suite.py)
        wanted.add("run")
    assert wanted <= _defined(task.module), task


def test_every_worker_job_names_a_function_of_its_module():
    for name, (module, function, _) in worker.JOBS.items():
        assert function in _defined(module), name
