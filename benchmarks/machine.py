"""The machine a benchmark ran on: CPU model, cores and notable instruction-set flags, memory,
load average, and the versions of the packages that matter, for every report's header.

Reads /proc and the installed package metadata; imports no framework.
"""

import importlib.metadata
import os
import platform

from mrcnn_tf.training import cpu_support  # (no TensorFlow in this module)

# CPU flags worth naming in a report: they decide which kernels oneDNN / XNNPACK can use.
INTERESTING_CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
                         "amx_bf16", "amx_int8", "amx_tile")
VERSIONED_PACKAGES = ("tensorflow", "keras", "numpy", "ai-edge-litert", "torch", "torchvision",
                      "pycocotools")


def bf16_hardware(flags=None):
    """Whether the CPU has bfloat16 arithmetic (AVX512_BF16 or AMX-BF16), which oneDNN needs to
    run mixed_bfloat16 faster than float32; without it bf16 is converted in software, slower.

    flags: a set of /proc/cpuinfo flags (default: this machine's).
    """
    return cpu_support.has_bf16_instructions(flags)


def cpu_description():
    """CPU model name, logical CPU count, usable cores and notable instruction-set flags."""
    model, flags = cpu_support.first_cpu_field("model name"), cpu_support.cpu_flags()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"model": model or platform.processor() or platform.machine(),
            "logical_cpus": os.cpu_count(), "usable_cpus": usable,
            "flags": [f for f in INTERESTING_CPU_FLAGS if f in flags],
            "bf16_hardware": bf16_hardware(flags),
            "memory_gb": _memory_total_gb(), "machine": platform.machine(),
            "os": f"{platform.system()} {platform.release()}"}


def _memory_total_gb():
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024.0 / 1024.0, 1)
    except OSError:
        return None
    return None


def package_versions():
    """Python and the installed versions of the packages that matter here (None: absent).

    Read from the installed metadata, so no framework is imported just to name its version.
    """
    versions = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def load_average():
    """The 1, 5 and 15 minute load averages (other work on the CPU skews timings)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None
