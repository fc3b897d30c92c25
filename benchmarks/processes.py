"""Child processes: the command that runs `python -m benchmarks` in one, and running a child
to its end (or its timeout) with its own peak memory and its output in a log.

Imports no framework.
"""

import os
import signal
import subprocess
import sys
import time

from benchmarks import memory

# The repository root: a child finds `benchmarks` (and an uninstalled mrcnn_tf) there,
# whatever folder the parent was started from.
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def module_command(*args):
    """[python, -u, -m, benchmarks, *args]: this package's entry point with unbuffered output,
    for a child process (its environment from `child_env`)."""
    return [sys.executable, "-u", "-m", "benchmarks", *[str(a) for a in args]]


def child_env(**changes):
    """This process's environment with `changes`, and the repository root first on
    PYTHONPATH so that `module_command` finds the package from any working folder."""
    env = dict(os.environ, **changes)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    return env


def run_child(argv, timeout_s, log_path, env=None):
    """Runs `argv` in a child process and returns how it ended and its peak memory.

    The child's stdout and stderr go to `log_path`. The child is reaped with os.wait4, whose
    rusage gives that child's own peak RSS (its own reaped children folded in), which
    Popen.wait would throw away.

    Returns dict: returncode (negative: killed by that signal), timed_out, wall_s, cpu_s
    (user + system time of the child and its reaped children), peak_rss_mb (see memory.py:
    it also counts the parent's pages when the parent is large, so prefer the child's own).
    """
    start = time.perf_counter()
    with open(log_path, "w") as log:
        # A new session so that a timeout can end the child's own children too, and nothing
        # else: the group id is the child's pid.
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
        timed_out = False
        while True:
            pid, status, rusage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout_s:
                timed_out = True
                os.killpg(process.pid, signal.SIGKILL)
                pid, status, rusage = os.wait4(process.pid, 0)
                break
            time.sleep(0.05)
    process.returncode = os.waitstatus_to_exitcode(status)  # Popen must not reap it again
    return {"returncode": process.returncode, "timed_out": timed_out,
            "wall_s": round(time.perf_counter() - start, 2),
            "cpu_s": round(rusage.ru_utime + rusage.ru_stime, 2),
            "peak_rss_mb": round(memory.child_maxrss_mb(rusage), 1)}


def log_tail(log_path, lines=25):
    """The last `lines` lines of a child's log (the traceback of a crash, usually)."""
    try:
        with open(log_path, errors="replace") as f:
            return "".join(f.readlines()[-lines:])
    except OSError:
        return ""
