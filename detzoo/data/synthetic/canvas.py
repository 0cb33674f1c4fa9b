"""The stuff background: 1-3 horizontal bands of sky, ground and water with wavy borders."""

from dataclasses import dataclass

import cv2
import numpy as np

from .categories import STUFF_CATEGORIES

VOID = 255  # stuff-map value of the border lines between bands (void in panoptic)
_BORDER_HALF_WIDTH = 1.0  # px either side of a band border that is void


@dataclass
class Canvas:
    """A background image and which stuff category each of its pixels shows.

    Attributes:
        image: uint8 ``[H, W, 3]`` RGB.
        stuff: uint8 ``[H, W]``: index into :data:`STUFF_CATEGORIES`, or :data:`VOID`.
    """

    image: np.ndarray
    stuff: np.ndarray


# Each painter fills the rows ``rows`` (float32 [R] pixel-centre y of a ``height``-row image)
# and returns float32 [R, width, 3] RGB.
def _sky(rng: np.random.Generator, rows: np.ndarray, height: int, width: int) -> np.ndarray:
    top = np.array([70, 120, 220], np.float32) + rng.uniform(-30, 30, 3)
    bottom = np.array([190, 215, 250], np.float32) + rng.uniform(-25, 5, 3)
    ramp = (rows / height)[:, None, None]
    return np.broadcast_to(top + ramp * (bottom - top), (len(rows), width, 3))


def _ground(rng: np.random.Generator, rows: np.ndarray, height: int, width: int) -> np.ndarray:
    base = np.array([120, 100, 60], np.float32) + rng.uniform(-40, 40, 3)
    grid = (max(len(rows) // 24, 2), max(width // 24, 2))
    coarse = 25 * rng.standard_normal(grid, dtype=np.float32)
    blotches = cv2.resize(coarse, (width, len(rows)), interpolation=cv2.INTER_LINEAR)
    grain = 12 * rng.standard_normal((len(rows), width), dtype=np.float32)
    return base + (blotches + grain)[..., None]


def _water(rng: np.random.Generator, rows: np.ndarray, height: int, width: int) -> np.ndarray:
    base = np.array([40, 90, 150], np.float32) + rng.uniform(-25, 25, 3)
    period = rng.uniform(6, 16)
    cols = np.arange(width, dtype=np.float32)
    waviness = 1.5 * np.sin(cols / rng.uniform(15, 40))
    ripple = np.sin(2 * np.pi * rows[:, None] / period + waviness[None, :])
    return base + 25 * ripple[..., None]


_PAINTERS = {"sky": _sky, "ground": _ground, "water": _water}


def draw_canvas(rng: np.random.Generator, height: int, width: int) -> Canvas:
    """Split a ``height x width`` background into 1-3 bands of distinct stuff categories.

    Band borders are sine waves that never cross; the pixels within about 1 px of a border are
    drawn as a dark line and marked :data:`VOID`.
    """
    num_bands = int(rng.integers(1, 4))
    kinds = rng.permutation(len(STUFF_CATEGORIES))[:num_bands]
    rows = np.arange(height, dtype=np.float32) + 0.5
    cols = np.arange(width, dtype=np.float32)[None, :] + 0.5
    band = np.zeros((height, width), np.uint8)
    near_border = np.zeros((height, width), bool)
    gap = height / num_bands
    for k in range(1, num_bands):
        amplitude = rng.uniform(0, gap / 6)
        wavelength = rng.uniform(0.3, 1.5) * width
        level = k * gap + rng.uniform(-gap / 5, gap / 5)
        border = level + amplitude * np.sin(2 * np.pi * cols / wavelength + rng.uniform(0, 6.3))
        band += (rows[:, None] >= border).astype(np.uint8)
        near_border |= np.abs(rows[:, None] - border) < _BORDER_HALF_WIDTH
    stuff = kinds.astype(np.uint8)[band]
    image = np.empty((height, width, 3), np.uint8)
    for index in kinds:
        present = np.flatnonzero((stuff == index).any(axis=1))
        span = slice(present[0], present[-1] + 1)
        texture = _PAINTERS[STUFF_CATEGORIES[index]["name"]](rng, rows[span], height, width)
        inside = stuff[span] == index
        image[span][inside] = np.clip(texture[inside], 0, 255).astype(np.uint8)
    image[near_border] = 25
    stuff[near_border] = VOID
    return Canvas(image=image, stuff=stuff)
