"""COCO panoptic PNGs: segment ids <-> RGB pixels (panopticapi's ``id2rgb``/``rgb2id``)."""

from __future__ import annotations

import numpy as np


def id2rgb(segment_ids: np.ndarray) -> np.ndarray:
    """uint8 ``[H, W, 3]`` RGB of int ``[H, W]`` segment ids in ``[0, 256³)``:
    id = R + 256 G + 256² B."""
    ids = np.asarray(segment_ids).astype(np.int64)
    return np.stack([ids % 256, ids // 256 % 256, ids // 256**2 % 256], axis=-1).astype(np.uint8)


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """int64 ``[H, W]`` segment ids of uint8 ``[H, W, 3]`` RGB pixels (the inverse of
    :func:`id2rgb`)."""
    rgb = np.asarray(rgb).astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]
