"""detzoo: a PyTorch Lightning model zoo for object detection and segmentation."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

# Subpackages and names imported on first use (PEP 562): `import detzoo` stays cheap, and
# `detzoo.zoo.get(...)` / `detzoo.Predictor(...)` work without importing them first.
_LAZY_SUBMODULES = ("backbones", "callbacks", "data", "evaluation", "heads", "models", "zoo")
_LAZY_NAMES = {"Predictor": "detzoo.predictor"}


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"detzoo.{name}")
    if name in _LAZY_NAMES:
        value = getattr(importlib.import_module(_LAZY_NAMES[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'detzoo' has no attribute {name!r}")


if TYPE_CHECKING:
    from detzoo import backbones, callbacks, data, evaluation, heads, models, zoo  # noqa: F401
    from detzoo.predictor import Predictor  # noqa: F401
