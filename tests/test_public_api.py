"""The package root: `import mrcnn_tf` is instant and gives the public names."""

import subprocess
import sys

import pytest

import mrcnn_tf


@pytest.mark.parametrize("name", sorted(mrcnn_tf._EXPORTS))  # noqa: SLF001
def test_each_public_name_is_its_module_object(name):
    import importlib  # noqa: PLC0415
    value = getattr(mrcnn_tf, name)
    assert value is getattr(importlib.import_module(mrcnn_tf._EXPORTS[name]), name)  # noqa: SLF001
    assert name in dir(mrcnn_tf) and name in mrcnn_tf.__all__


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'MaskRCNNN'"):
        mrcnn_tf.MaskRCNNN  # noqa: B018


def test_importing_the_package_loads_no_tensorflow():
    code = ("import sys, mrcnn_tf; print(mrcnn_tf.__version__); "
            "print(sorted(m for m in ('tensorflow', 'keras', 'cv2') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split("\n")
    assert out[0] == mrcnn_tf.__version__
    assert out[1] == "[]"
