"""The detzoo model zoo: the index, pretrained weights, checkpoint conversion and caching.

>>> import detzoo
>>> detzoo.zoo.list_models(task="detection")
>>> model = detzoo.zoo.get("faster_rcnn_R50_FPN_3x")                          # COCO weights
>>> model = detzoo.zoo.get("faster_rcnn_R50_FPN_3x", weights="model_final_280758.pkl")
>>> model = detzoo.zoo.get("faster_rcnn_R50_FPN_3x", num_classes=3)           # to fine-tune
>>> detzoo.zoo.save_weights(model, "mine.safetensors")

Names resolve lazily (PEP 562), so ``detzoo zoo list`` and the download path do not import torch
or Lightning until a model is built.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "detzoo.zoo.index": (
        "TASKS",
        "WeightsSource",
        "ZooEntry",
        "ZooError",
        "class_names",
        "configs_root",
        "entry",
        "get_config",
        "list_models",
        "load_index",
    ),
    "detzoo.zoo.api": ("get", "inference_size", "weights_path"),
    "detzoo.zoo.checkpoints": ("CheckpointFile", "load_checkpoint", "read_weights", "save_weights"),
    "detzoo.zoo.download": ("ChecksumError", "DownloadError", "cache_dir", "cached_path", "fetch"),
    "detzoo.zoo.detectron2": ("CheckpointMismatchError", "load_detectron2_weights"),
    "detzoo.zoo.backbone_weights": ("load_imagenet_backbone",),
    "detzoo.zoo.safe_pickle": ("UnsafePickleError",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = [
    "TASKS",
    "CheckpointFile",
    "CheckpointMismatchError",
    "ChecksumError",
    "DownloadError",
    "UnsafePickleError",
    "WeightsSource",
    "ZooEntry",
    "ZooError",
    "cache_dir",
    "cached_path",
    "class_names",
    "configs_root",
    "entry",
    "fetch",
    "get",
    "get_config",
    "inference_size",
    "list_models",
    "load_checkpoint",
    "load_detectron2_weights",
    "load_imagenet_backbone",
    "load_index",
    "read_weights",
    "save_weights",
    "weights_path",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'detzoo.zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what static tools see
    from detzoo.zoo.api import get, inference_size, weights_path
    from detzoo.zoo.backbone_weights import load_imagenet_backbone
    from detzoo.zoo.checkpoints import (
        CheckpointFile,
        load_checkpoint,
        read_weights,
        save_weights,
    )
    from detzoo.zoo.detectron2 import CheckpointMismatchError, load_detectron2_weights
    from detzoo.zoo.download import ChecksumError, DownloadError, cache_dir, cached_path, fetch
    from detzoo.zoo.index import (
        TASKS,
        WeightsSource,
        ZooEntry,
        ZooError,
        class_names,
        configs_root,
        entry,
        get_config,
        list_models,
        load_index,
    )
    from detzoo.zoo.safe_pickle import UnsafePickleError
