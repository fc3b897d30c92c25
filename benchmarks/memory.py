"""Peak resident memory (RSS) of this process, with per-measurement resets.

Linux keeps the process's high-water mark in /proc/self/status (VmHWM). Writing "5" to
/proc/self/clear_refs resets it to the current RSS, so one process can report the peak of each
of several measurements (`process_peak_rss_mb` still gives the whole process's). Where that
is not possible (another OS, a locked-down /proc) the peak is the process-wide one since
start, and `peak_is_reset` says so.
"""

import resource
import sys

_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"
_erased_peak_kb = 0  # the highest peak that reset_peak() has erased, kB


def _status_kb(field):
    """Value of `field` ("VmHWM", "VmRSS") in /proc/self/status in kB, or None."""
    try:
        with open(_STATUS) as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_mb():
    """Resident memory now, MB (None where /proc is missing)."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024.0


def peak_rss_mb():
    """Peak resident memory since start or since the last successful `reset_peak()`, MB."""
    kb = _status_kb("VmHWM")
    if kb is None:
        # ru_maxrss is kB on Linux and bytes on macOS.
        maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        kb = maxrss / 1024.0 if sys.platform == "darwin" else maxrss
    return kb / 1024.0


def process_peak_rss_mb():
    """Peak resident memory of the whole process since start, MB, resets or not.

    A reset also lowers the kernel's own record (ru_maxrss, and what a parent's wait4 sees),
    so `reset_peak` keeps the peak it erases and this adds it back.
    """
    return max(_erased_peak_kb / 1024.0, peak_rss_mb())


def reset_peak():
    """Resets the peak to the current RSS. Returns True if the kernel allowed it."""
    global _erased_peak_kb
    _erased_peak_kb = max(_erased_peak_kb, _status_kb("VmHWM") or 0)
    try:
        with open(_CLEAR_REFS, "w") as f:
            f.write("5")
    except OSError:
        return False
    hwm, rss = _status_kb("VmHWM"), _status_kb("VmRSS")
    # A kernel that ignores "5" leaves VmHWM above VmRSS: the reset did not happen.
    return hwm is not None and rss is not None and hwm <= rss + 1024


def child_maxrss_mb(rusage):
    """ru_maxrss of a reaped child (from os.wait4) in MB: the child's peak (and its own
    reaped children's, as the kernel folds those in)."""
    value = rusage.ru_maxrss
    return value / (1024.0 * 1024.0) if sys.platform == "darwin" else value / 1024.0


class PeakMemory:
    """Context manager: the peak RSS (MB) while the block ran, in `.peak_mb`.

    `.peak_is_reset` is False when the peak could not be reset at entry: `.peak_mb` is then
    the process-wide peak so far, an upper bound.
    """

    def __enter__(self):
        self.peak_is_reset = reset_peak()
        self.start_mb = current_rss_mb()
        return self

    def __exit__(self, *exc):
        self.peak_mb = peak_rss_mb()
        return False

    def as_dict(self):
        """{"peak_rss_mb", "start_rss_mb", "peak_is_reset"} rounded for the JSON."""
        return {"peak_rss_mb": round(self.peak_mb, 1),
                "start_rss_mb": None if self.start_mb is None else round(self.start_mb, 1),
                "peak_is_reset": self.peak_is_reset}

