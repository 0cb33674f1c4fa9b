"""COCO segmentations (polygons, uncompressed or compressed RLE) -> bitmaps, through pycocotools."""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

Segmentation = list[list[float]] | dict[str, Any]


def segmentation_to_rle(segmentation: Segmentation, height: int, width: int) -> dict[str, Any]:
    """One COCO ``segmentation`` as a single compressed RLE of an ``height x width`` image.

    Polygons (a list of flat ``[x0, y0, x1, y1, ...]`` lists, each of >= 3 points) are merged
    into one RLE; uncompressed RLE (``counts`` a list) is compressed; compressed RLE passes through.
    Callers validate polygon lengths first (pycocotools fails cryptically on short ones).
    """
    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if isinstance(segmentation["counts"], list):
            return mask_utils.frPyObjects(segmentation, height, width)
        return segmentation
    raise ValueError(
        "a segmentation must be a list of polygons or an RLE dict with 'size' and 'counts', "
        f"got {type(segmentation).__name__}"
    )


def segmentation_to_bitmap(segmentation: Segmentation, height: int, width: int) -> np.ndarray:
    """uint8 ``[height, width]`` mask (1 inside) of one COCO ``segmentation``."""
    rle = segmentation_to_rle(segmentation, height, width)
    return np.ascontiguousarray(mask_utils.decode(rle), dtype=np.uint8)


def segmentations_to_bitmaps(
    segmentations: list[Segmentation], height: int, width: int
) -> np.ndarray:
    """uint8 ``[N, height, width]`` masks of ``N`` COCO segmentations (``N`` may be 0)."""
    masks = np.zeros((len(segmentations), height, width), np.uint8)
    for i, segmentation in enumerate(segmentations):
        masks[i] = segmentation_to_bitmap(segmentation, height, width)
    return masks


def bitmap_to_box(mask: np.ndarray) -> np.ndarray:
    """float32 ``[4]`` tight XYXY box (pixels, continuous frame) of a ``[H, W]`` mask; zeros if empty."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return np.zeros(4, np.float32)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
