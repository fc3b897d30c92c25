"""cpu_support: a mixed precision the CPU kernels cannot run is refused in one line, not
aborted in the first step; an uncapped process is never probed."""

import os
import subprocess
import sys

import pytest

from mrcnn_tf.training import cpu_support


@pytest.fixture
def no_cap(monkeypatch):
    for name in cpu_support.ISA_CAP_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_an_uncapped_process_is_never_probed(no_cap, monkeypatch):
    def fail(dtype):
        raise AssertionError(f"probed {dtype} without a cap")

    monkeypatch.setattr(cpu_support, "_probe", fail)
    assert cpu_support.isa_cap() is None
    for policy in ("float32", "mixed_bfloat16", "mixed_float16"):
        assert cpu_support.unsupported_reason(policy) is None


def test_float32_is_never_probed_and_a_failed_probe_is_explained(no_cap, monkeypatch):
    monkeypatch.setenv("DNNL_MAX_CPU_ISA", "AVX2")
    assert cpu_support.isa_cap() == "DNNL_MAX_CPU_ISA=AVX2"
    probed = []
    monkeypatch.setattr(cpu_support, "_probe",
                        lambda dtype: probed.append(dtype) or "AbortedError: no primitive")
    assert cpu_support.unsupported_reason("float32") is None
    reason = cpu_support.unsupported_reason("mixed_float16")
    assert probed == ["float16"]
    assert "DNNL_MAX_CPU_ISA=AVX2" in reason and "AbortedError: no primitive" in reason
    assert "float32" in reason and "TF_ENABLE_ONEDNN_OPTS=0" in reason


# In a child capped to AVX2: either set_precision refuses mixed_bfloat16 with the flag and the
# cap named, or (a CPU whose TensorFlow keeps bfloat16 off oneDNN, e.g. one without AVX-512)
# a bfloat16 model really runs. Either way the process neither aborts nor crashes, and float32
# runs under the cap.
CHILD = """
import keras, numpy as np
from mrcnn_tf.training import precision

def run_model():
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.Conv2DTranspose(4, 2, strides=2),
                              keras.layers.Flatten(), keras.layers.Dense(2)])
    model(np.ones((1, 8, 8, 3), np.float32)).numpy()

run_model()
try:
    precision.set_precision("mixed_bfloat16")
except ValueError as error:
    print("refused:", error)
else:
    run_model()
    print("ran")
"""


def test_a_capped_process_refuses_what_it_cannot_run_or_runs_it():
    env = dict(os.environ, ONEDNN_MAX_CPU_ISA="AVX2", TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("DNNL_MAX_CPU_ISA", None)
    child = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True,
                           env=env, timeout=300)
    assert child.returncode == 0, child.stderr[-3000:]
    out = child.stdout.strip()
    assert out == "ran" or out.startswith(
        "refused: --mixed_precision=mixed_bfloat16: this CPU's oneDNN, capped by "
        "ONEDNN_MAX_CPU_ISA=AVX2, cannot run bfloat16"), out
