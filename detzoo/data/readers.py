"""One entry point for the COCO-family readers, by task name (for configs and data modules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .coco import CocoDetection
from .dataset import DetectionDataset
from .densepose import CocoDensePose
from .keypoints import CocoKeypoints
from .lvis import LvisDetection
from .panoptic import CocoPanoptic

READERS: dict[str, type[DetectionDataset]] = {
    "instances": CocoDetection,
    "keypoints": CocoKeypoints,
    "panoptic": CocoPanoptic,
    "densepose": CocoDensePose,
    "lvis": LvisDetection,
}


def build_dataset(
    task: str,
    image_root: str | Path,
    annotation_json: str | Path,
    *,
    panoptic_root: str | Path | None = None,
    **kwargs: Any,
) -> DetectionDataset:
    """The reader for ``task`` (one of :data:`READERS`) on these files; ``kwargs`` go to it
    (``transforms``, ``filter_empty``, ...). ``panoptic`` needs ``panoptic_root``."""
    if task not in READERS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(READERS)}")
    if task == "panoptic":
        if panoptic_root is None:
            raise ValueError("task 'panoptic' needs panoptic_root (the directory of segment PNGs)")
        return CocoPanoptic(image_root, annotation_json, panoptic_root, **kwargs)
    return READERS[task](image_root, annotation_json, **kwargs)
