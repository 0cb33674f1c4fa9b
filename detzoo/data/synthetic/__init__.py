"""The procedural ``shapes`` dataset: COCO, keypoint, panoptic and DensePose files for any seed.

See :mod:`.writer` for the on-disk layout and :mod:`.categories` for categories, keypoints and
the DensePose part table.
"""

from .categories import (
    KEYPOINT_NAMES,
    KEYPOINT_OKS_SIGMAS,
    SKELETON,
    STUFF_CATEGORIES,
    THING_CATEGORIES,
)
from .writer import write_shapes_dataset

__all__ = [
    "KEYPOINT_NAMES",
    "KEYPOINT_OKS_SIGMAS",
    "SKELETON",
    "STUFF_CATEGORIES",
    "THING_CATEGORIES",
    "write_shapes_dataset",
]
