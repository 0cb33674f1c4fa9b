"""Object colours and surface textures (solid, gradient, stripes, noise)."""

import numpy as np

TEXTURE_KINDS: tuple[str, ...] = ("solid", "gradient", "stripes", "noise")

# A colour is accepted when its summed RGB distance to the background under it is at least this.
_MIN_CONTRAST = 150
_COLOUR_TRIES = 12


def contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random RGB colour far from ``background``'s mean colour.

    Args:
        rng: the image's random generator.
        background: uint8 ``[..., 3]`` RGB pixels the object will cover.

    Returns:
        float32 ``[3]`` RGB colour in 0..255 (the most distant of a few draws if none reaches
        the contrast target).
    """
    mean = background.reshape(-1, 3).mean(axis=0)
    best, best_distance = None, -1.0
    for _ in range(_COLOUR_TRIES):
        colour = rng.integers(0, 256, 3).astype(np.float32)
        distance = float(np.abs(colour - mean).sum())
        if distance > best_distance:
            best, best_distance = colour, distance
        if distance >= _MIN_CONTRAST:
            break
    return best


def paint_texture(
    rng: np.random.Generator, kind: str, height: int, width: int, colour: np.ndarray
) -> np.ndarray:
    """A ``height x width`` patch of texture ``kind`` around ``colour``.

    Args:
        rng: the image's random generator.
        kind: one of :data:`TEXTURE_KINDS`.
        height, width: patch size in pixels.
        colour: float32 ``[3]`` RGB base colour, 0..255.

    Returns:
        uint8 ``[height, width, 3]`` RGB patch.
    """
    if kind not in TEXTURE_KINDS:
        raise ValueError(f"unknown texture {kind!r}; expected one of {TEXTURE_KINDS}")
    patch = np.broadcast_to(colour, (height, width, 3)).astype(np.float32)
    if kind == "gradient":
        angle = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        ramp = xs * np.cos(angle) + ys * np.sin(angle)
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1.0)
        shift = rng.uniform(-90, 90, 3).astype(np.float32)
        patch = patch + ramp[..., None] * shift
    elif kind == "stripes":
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(4, 12)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        phase = (xs * np.cos(angle) + ys * np.sin(angle)) / period
        dark = (np.floor(phase) % 2).astype(np.float32)
        patch = patch * (1.0 - 0.4 * dark[..., None])
    elif kind == "noise":
        patch = patch + rng.normal(0, 20, (height, width, 1)).astype(np.float32)
    return np.clip(patch, 0, 255).astype(np.uint8)
