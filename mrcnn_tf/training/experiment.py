"""`--config` and `--override`: a preset name or an experiment file, then field overrides.

An experiment is a Python file (see experiments/) defining `CONFIG`, a `mrcnn_tf.config.Config`,
and optionally `DATA` and `TRAIN`, dicts of `mrcnn-tf train` flag defaults (e.g. the dataset
paths, steps per epoch); flags given on the command line win over them.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
import typing
from typing import Any, Dict, Optional, Sequence, Tuple

from mrcnn_tf.config import PRESETS, Config, get_config


@dataclasses.dataclass
class Experiment:
    """What `--config` named: the config and the experiment's flag defaults."""

    config: Config
    source: str  # the preset name or the experiment file's path
    defaults: Dict[str, Any] = dataclasses.field(default_factory=dict)


def load_experiment(spec: str, overrides: Optional[Sequence[str]] = None) -> Experiment:
    """Loads `--config=spec` and applies `--override key=value` strings.

    Args:
      spec: a preset name (mrcnn_tf.config.PRESETS) or a path to an experiment .py file.
      overrides: "field=value" strings; values are parsed by the field's type.
    Raises:
      ValueError naming the flag and what was expected.
    """
    if spec.endswith(".py") or os.sep in spec:
        experiment = _load_file(spec)
    elif spec in PRESETS:
        experiment = Experiment(get_config(spec), spec)
    else:
        raise ValueError(f"--config={spec!r}: expected a preset name (one of "
                         f"{sorted(PRESETS)}) or an experiments/*.py file")
    changes = parse_overrides(overrides or [], experiment.config)
    if changes:
        try:
            experiment.config = experiment.config.replace(**changes)
        except ValueError as error:
            raise ValueError(f"--override: {error}") from None
    return experiment


def _load_file(path: str) -> Experiment:
    if not os.path.isfile(path):
        raise ValueError(f"--config={path}: no such experiment file")
    name = "mrcnn_tf_experiment_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as error:  # the user's file: report whatever it raised, in one line
        raise ValueError(f"--config={path}: the experiment file failed to load: "
                         f"{type(error).__name__}: {error}") from None
    config = getattr(module, "CONFIG", None)
    if not isinstance(config, Config):
        raise ValueError(f"--config={path}: expected the file to define CONFIG, a "
                         f"mrcnn_tf.config.Config (got {type(config).__name__})")
    defaults = {}
    for attribute in ("DATA", "TRAIN"):
        values = getattr(module, attribute, None) or {}
        if not isinstance(values, dict):
            raise ValueError(f"--config={path}: {attribute} must be a dict of flag values")
        defaults.update(values)
    return Experiment(config, path, defaults)


def _field_types() -> Dict[str, Any]:
    hints = typing.get_type_hints(Config)
    return {f.name: hints[f.name] for f in dataclasses.fields(Config)}


def parse_overrides(overrides: Sequence[str], config: Config) -> Dict[str, Any]:
    """["num_classes=5", "train_min_sizes=640,800", ...] -> {field: typed value}."""
    types = _field_types()
    changes = {}
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"--override {item!r}: expected key=value")
        if key not in types:
            raise ValueError(f"--override {item!r}: unknown config field {key!r}; known "
                             f"fields: {', '.join(sorted(types))}")
        changes[key] = _parse_value(key, text.strip(), types[key], getattr(config, key))
    return changes


def _parse_value(key: str, text: str, hint: Any, current: Any) -> Any:
    """Parses `text` as the type `hint` of field `key`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    optional = origin is typing.Union and type(None) in args
    if optional:
        if text.lower() in ("none", "null", ""):
            return None
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)

    def fail(expected: str):
        raise ValueError(f"--override {key}={text}: expected {expected} "
                         f"(current value {current!r})")

    if hint is bool:
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        fail("true or false")
    if hint is int:
        try:
            return int(text)
        except ValueError:
            fail("an integer")
    if hint is float:
        try:
            return float(text)
        except ValueError:
            fail("a number")
    if hint is str:
        return text
    if origin in (tuple, Tuple):
        element = args[0] if args else float
        try:
            value = ast.literal_eval(text if text.startswith(("(", "[")) else f"({text},)")
            values = value if isinstance(value, (list, tuple)) else [value]
            if element is int and any(isinstance(v, float) for v in values):
                raise ValueError("int(640.5) would silently drop the fraction")
            return tuple(element(v) for v in values)
        except (ValueError, SyntaxError, TypeError):
            fail(f"a comma-separated list of {element.__name__} values")
    fail(f"a value of type {hint}")
