"""Packaging for mrcnn-tf: Mask R-CNN for TensorFlow 2 and Keras 3."""

import pathlib

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent


def read_requirements():
    lines = (HERE / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


setup(
    name="mrcnn-tf",
    version="0.1.0",
    description="Mask R-CNN for TensorFlow 2 and Keras 3: train with model.fit, export to "
                "SavedModel and TFLite.",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["mrcnn_tf", "mrcnn_tf.*"]),
    python_requires=">=3.10",
    install_requires=read_requirements(),
    extras_require={
        # gRPC client for TF Serving (REST needs nothing extra).
        "serving": ["tensorflow-serving-api>=2.21,<2.22"],
        "test": ["pytest>=8", "pytest-xdist>=3.5", "hypothesis>=6.100",
                 "tensorflow-serving-api>=2.21,<2.22"],
        # Only to import torchvision's COCO weights (mrcnn-tf import-weights) and to run the
        # parity tests against torchvision.
        "torch": ["torch>=2.14,<2.15", "torchvision>=0.29,<0.30"],
    },
    entry_points={"console_scripts": ["mrcnn-tf=mrcnn_tf.cli:run"]},
)
