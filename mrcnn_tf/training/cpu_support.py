"""Whether this process's CPU kernels can run a mixed-precision policy's compute dtype.

On a real CPU TensorFlow and oneDNN agree: TensorFlow routes bfloat16 and float16 convolutions
and matmuls to oneDNN only where the CPU has the instructions oneDNN needs (AVX-512 for
bfloat16, AVX512-FP16 or AMX-FP16 for float16), and to its own Eigen kernels elsewhere. They
disagree when oneDNN is capped below the CPU with `ONEDNN_MAX_CPU_ISA` (or its old name
`DNNL_MAX_CPU_ISA`): TensorFlow reads the CPU's own flags, routes the op to oneDNN, and oneDNN,
held to the capped instruction set, refuses the convolution (`AbortedError: could not create a
primitive descriptor`) or crashes the process in the matmul (seen with TF 2.21 on an AMX Xeon
under `ONEDNN_MAX_CPU_ISA=AVX2`: bfloat16 and float16 both; under `AVX512_CORE`: float16).

So only a capped process is probed, and in a child process (a crash there costs nothing):
`unsupported_reason(policy)` is None wherever the policy's ops run, and otherwise says why, so
`set_precision` can refuse the flag with one clear line instead of a crash in the first step.
This module does not import TensorFlow (the benchmark suite's parent process uses it).
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys

ISA_CAP_VARIABLES = ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA")
# /proc/cpuinfo flags of bfloat16 arithmetic, either of which oneDNN uses for bfloat16
# convolutions and matmuls; without them it converts in software, slower than float32.
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")

# The ops a mixed-precision MaskRCNN computes in its low-precision dtype, on the CPU, eagerly
# and inside a tf.function (TensorFlow rewrites each for oneDNN on its own path).
_PROBE = """
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import tensorflow as tf
dtype = tf.as_dtype(sys.argv[1])

def ops(x, kernel, up_kernel, matrix):
    tf.nn.conv2d(x, kernel, 1, "SAME")
    tf.nn.conv2d_transpose(x, up_kernel, [1, 16, 16, 8], 2)
    tf.matmul(matrix, matrix, transpose_b=True)

with tf.device("/CPU:0"):
    args = [tf.ones(s, dtype) for s in ([1, 8, 8, 8], [3, 3, 8, 8], [2, 2, 8, 8], [4, 8])]
    ops(*args)
    tf.function(ops)(*args)
"""

_COMPUTE_DTYPES = {"mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}


def first_cpu_field(key: str) -> str | None:
    """The value of `key` ("model name", "flags", ...) for the first CPU in /proc/cpuinfo;
    None where it is absent or the file cannot be read (not Linux)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip() == key:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_flags() -> set:
    """The instruction-set flags of the first CPU (empty where they cannot be read)."""
    return set((first_cpu_field("flags") or "").split())


def has_bf16_instructions(flags=None) -> bool:
    """Whether the CPU has bfloat16 arithmetic (AVX512_BF16 or AMX-BF16); `flags`: a set of
    /proc/cpuinfo flags (default: this machine's)."""
    return bool(set(BF16_CPU_FLAGS) & (cpu_flags() if flags is None else set(flags)))


def isa_cap() -> str | None:
    """`NAME=VALUE` of the oneDNN instruction-set cap in this process's environment, or None."""
    for name in ISA_CAP_VARIABLES:
        if os.environ.get(name):
            return f"{name}={os.environ[name]}"
    return None


def unsupported_reason(policy: str) -> str | None:
    """None when this process can compute `policy` ("float32", "mixed_bfloat16",
    "mixed_float16") on the CPU; otherwise one sentence saying why not and what to do.

    Only a process whose oneDNN is capped (`isa_cap()`) is probed: a child Python runs a
    convolution, a transposed convolution and a matmul in the policy's compute dtype, eagerly
    and in a tf.function, with this environment (about 4 s, once per process and policy).
    """
    dtype = _COMPUTE_DTYPES.get(policy)
    cap = isa_cap()
    if dtype is None or cap is None:
        return None
    failure = _probe(dtype)
    if failure is None:
        return None
    return (f"this CPU's oneDNN, capped by {cap}, cannot run {dtype} convolutions and matmuls "
            f"that TensorFlow hands it ({failure}); use float32, or lift the cap "
            f"(unset {cap.split('=')[0]}), or run TensorFlow's own kernels "
            f"(TF_ENABLE_ONEDNN_OPTS=0)")


@functools.cache
def _probe(dtype: str) -> str | None:
    """None if the probe's ops ran in `dtype` in a child process, else what went wrong."""
    try:
        child = subprocess.run([sys.executable, "-c", _PROBE, dtype], capture_output=True,
                               text=True, timeout=300)  # this process's environment
    except subprocess.TimeoutExpired:
        return "the probe did not finish in 300 s"
    if child.returncode == 0:
        return None
    if child.returncode < 0:
        return f"the probe was killed by {signal.Signals(-child.returncode).name}"
    lines = [line.strip() for line in child.stderr.splitlines() if "Error" in line]
    if not lines:
        return f"the probe exited {child.returncode}"
    # "...AbortedError: {{function_node ...}} Operation received an exception:Status: 3,
    # message: could not create a primitive descriptor for ... primitive. Run workload ..."
    found = re.search(r"(\w+Error).*?message: (.*?)(\. Run workload|$)", lines[-1])
    return f"{found.group(1)}: {found.group(2)}" if found else lines[-1][:200]
