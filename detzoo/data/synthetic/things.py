"""The simple shape kinds (circle, triangle, square, star, hexagon, ring) and crowd clusters."""

import numpy as np

from .categories import SHAPE_KINDS
from .raster import Region, fill_polygons


def _regular(corners: int, radius: float) -> np.ndarray:
    angles = np.linspace(0, 2 * np.pi, corners, endpoint=False) - np.pi / 2
    return radius * np.stack([np.cos(angles), np.sin(angles)], 1)


def _star(radius: float) -> np.ndarray:
    return np.tile([[1.0], [0.45]], (5, 1)) * _regular(10, radius)


def shape_outlines(
    rng: np.random.Generator, kind: str, centre: np.ndarray, radius: float
) -> list[tuple[np.ndarray, int]]:
    """Polygons drawing one shape, for :func:`fill_polygons`.

    Args:
        rng: the image's random generator (rotation and vertex jitter).
        kind: one of :data:`SHAPE_KINDS`.
        centre: float ``[2]`` (x, y) centre in image pixels.
        radius: circumradius in pixels.

    Returns:
        ``(points, value)`` pairs: the outline filled with 1, and for ``ring`` its hole with 0.
    """
    if kind not in SHAPE_KINDS:
        raise ValueError(f"unknown shape {kind!r}; expected one of {SHAPE_KINDS}")
    if kind in ("circle", "ring"):
        outline = _regular(48, radius)
    elif kind == "triangle":
        outline = _regular(3, radius) * rng.uniform(0.75, 1.0, (3, 1))
    elif kind == "square":
        outline = _regular(4, radius)
    elif kind == "star":
        outline = _star(radius)
    else:
        outline = _regular(6, radius)
    angle = rng.uniform(0, 2 * np.pi)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    polygons = [(outline @ rotation.T + centre, 1)]
    if kind == "ring":
        polygons.append((_regular(48, radius * rng.uniform(0.35, 0.6)) + centre, 0))
    return polygons


def crowd_cluster(
    rng: np.random.Generator, centre: np.ndarray, spread: float, height: int, width: int
) -> Region | None:
    """A crowd region: 8-20 small overlapping discs scattered within ``spread`` px of ``centre``."""
    polygons = []
    for _ in range(int(rng.integers(8, 21))):
        offset = rng.uniform(-spread, spread, 2)
        polygons.append((_regular(16, rng.uniform(2.5, 6.0)) + centre + offset, 1))
    return fill_polygons(polygons, height, width)
