"""Rasterising polygons into image-clipped mask crops with cv2 (no anti-aliasing: exact masks)."""

from dataclasses import dataclass

import cv2
import numpy as np

# cv2.fillPoly's fixed-point precision: coordinates are drawn with 1/8 px accuracy.
_SHIFT = 3


@dataclass
class Region:
    """A binary mask stored as a crop of the image.

    Attributes:
        y0, x0: top-left corner of the crop in image pixels.
        mask: uint8 ``[h, w]`` crop; a non-zero value marks a pixel of the region (a part label
            for figures, 1 otherwise).
    """

    y0: int
    x0: int
    mask: np.ndarray

    @property
    def window(self) -> tuple[slice, slice]:
        """The crop's ``(rows, cols)`` slices into the full image."""
        h, w = self.mask.shape
        return slice(self.y0, self.y0 + h), slice(self.x0, self.x0 + w)


def fill_polygons(polygons: list[tuple[np.ndarray, int]], height: int, width: int) -> Region | None:
    """Draw polygons, in order, into the smallest crop of a ``height x width`` image holding them.

    Args:
        polygons: ``(points, value)`` pairs: float ``[P, 2]`` (x, y) vertices in image pixels
            (continuous coordinates, pixel ``i`` spans ``[i, i+1)``) and the uint8 value written
            inside; later polygons overwrite earlier ones, a value of 0 cuts a hole.
        height, width: the image size in pixels.

    Returns:
        The drawn region, or ``None`` when no polygon reaches into the image.
    """
    corners = np.concatenate([points for points, _ in polygons])
    x0, y0 = np.floor(corners.min(axis=0)).astype(int)
    x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 1
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    crop = np.zeros((y1 - y0, x1 - x0), np.uint8)
    for points, value in polygons:
        # cv2 samples pixel centres at integer coordinates; ours sit at i + 0.5.
        fixed = np.round((points - (x0 + 0.5, y0 + 0.5)) * (1 << _SHIFT)).astype(np.int32)
        cv2.fillPoly(crop, [fixed], int(value), lineType=cv2.LINE_8, shift=_SHIFT)
    if not crop.any():
        return None
    return Region(y0=int(y0), x0=int(x0), mask=crop)


def capsule_outline(start: np.ndarray, end: np.ndarray, radius: float) -> np.ndarray:
    """Vertices ``[P, 2]`` of a capsule: the segment ``start -> end`` thickened by ``radius`` px."""
    axis = end - start
    angle = float(np.arctan2(axis[1], axis[0]))
    half_turn = np.linspace(-np.pi / 2, np.pi / 2, 13)
    around_end = end + radius * np.stack([np.cos(angle + half_turn), np.sin(angle + half_turn)], 1)
    back = angle + np.pi + half_turn
    around_start = start + radius * np.stack([np.cos(back), np.sin(back)], 1)
    return np.concatenate([around_end, around_start])
