"""Composing one image: a stuff background, then objects painted back to front with occlusion."""

from dataclasses import dataclass

import numpy as np

from .canvas import draw_canvas
from .categories import CATEGORY_ID_BY_NAME, FIGURE_CATEGORY_ID, SHAPE_KINDS
from .figure import Figure, figure_outlines, pose_figure
from .raster import Region, fill_polygons
from .textures import TEXTURE_KINDS, contrasting_colour, paint_texture
from .things import crowd_cluster, shape_outlines

MAX_OBJECTS = 15
MIN_VISIBILITY = 0.3  # an object may not be covered below this fraction of its in-image area
_MIN_AREA = 20  # px: smaller objects are not placed
_EMPTY_IMAGE_RATE = 0.05
_CROWD_RATE = 0.05
_FIGURE_RATE = 0.25
_RLE_RATE = 0.15
_PLACEMENT_TRIES = 3


@dataclass
class SceneObject:
    """One object as drawn.

    Attributes:
        category_id: its COCO category id.
        region: everything it covered when drawn (later objects may cover parts of it); the
            values are DensePose coarse part indices for figures, 1 otherwise.
        iscrowd: whether it is a crowd region (a cluster of small discs).
        prefer_rle: whether its mask should be written as RLE even when a polygon would do.
        figure: the posed figure for the ``figure`` category, else ``None``.
    """

    category_id: int
    region: Region
    iscrowd: bool
    prefer_rle: bool
    figure: Figure | None = None


@dataclass
class Scene:
    """A finished image.

    Attributes:
        image: uint8 ``[H, W, 3]`` RGB.
        stuff: uint8 ``[H, W]`` stuff index per pixel (see :class:`.canvas.Canvas`).
        owner: int16 ``[H, W]``: ``k`` where ``objects[k - 1]`` is visible, 0 on background.
        objects: the objects, back to front.
    """

    image: np.ndarray
    stuff: np.ndarray
    owner: np.ndarray
    objects: list[SceneObject]


def _log_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    return float(np.exp(rng.uniform(np.log(low), np.log(max(high, low)))))


def _propose(rng: np.random.Generator, height: int, width: int) -> SceneObject | None:
    centre = rng.uniform(0, 1, 2) * (width, height)
    short_side = min(height, width)
    if rng.random() < _FIGURE_RATE:
        figure = pose_figure(rng, centre, _log_uniform(rng, 40, 0.9 * short_side))
        region = fill_polygons(figure_outlines(figure), height, width)
        category_id = FIGURE_CATEGORY_ID
    else:
        figure = None
        kind = SHAPE_KINDS[int(rng.integers(len(SHAPE_KINDS)))]
        radius = _log_uniform(rng, 5, 0.4 * short_side)
        region = fill_polygons(shape_outlines(rng, kind, centre, radius), height, width)
        category_id = CATEGORY_ID_BY_NAME[kind]
    prefer_rle = bool(rng.random() < _RLE_RATE)
    if region is None:
        return None
    return SceneObject(category_id, region, False, prefer_rle, figure)


def _paint(rng: np.random.Generator, image: np.ndarray, thing: SceneObject) -> None:
    rows, cols = thing.region.window
    labels = thing.region.mask
    inside = labels > 0
    colour = contrasting_colour(rng, image[rows, cols][inside])
    if thing.figure is not None:
        # One colour per body part, around the figure's colour, so parts are distinguishable.
        shades = rng.uniform(0.75, 1.2, (int(labels.max()) + 1, 1)) * colour
        image[rows, cols][inside] = np.clip(shades, 0, 255).astype(np.uint8)[labels[inside]]
        return
    kind = "solid" if thing.iscrowd else TEXTURE_KINDS[int(rng.integers(len(TEXTURE_KINDS)))]
    texture = paint_texture(rng, kind, *labels.shape, colour)
    image[rows, cols][inside] = texture[inside]


class _Layers:
    """Which object is visible where, and how much of each object is still visible."""

    def __init__(self, height: int, width: int) -> None:
        self.owner = np.zeros((height, width), np.int16)
        self.objects: list[SceneObject] = []
        self.drawn_area = np.zeros(0, np.int64)
        self.visible_area = np.zeros(0, np.int64)

    def place(self, rng: np.random.Generator, image: np.ndarray, thing: SceneObject) -> bool:
        """Paint ``thing`` on top unless it is too small or hides an earlier object too much."""
        rows, cols = thing.region.window
        inside = thing.region.mask > 0
        area = int(inside.sum())
        covered = np.bincount(self.owner[rows, cols][inside], minlength=len(self.objects) + 1)
        remaining = self.visible_area - covered[1:]
        if area < _MIN_AREA or np.any(remaining < MIN_VISIBILITY * self.drawn_area):
            return False
        _paint(rng, image, thing)
        self.objects.append(thing)
        self.owner[rows, cols][inside] = len(self.objects)
        self.drawn_area = np.append(self.drawn_area, area)
        self.visible_area = np.append(remaining, area)
        return True


def compose_scene(rng: np.random.Generator, height: int, width: int) -> Scene:
    """Draw one ``height x width`` image of 0-15 objects (and, in ~5% of images, a crowd).

    Objects are painted back to front; a new object is rejected (and another tried, up to 3
    times) if it would leave any earlier object less than :data:`MIN_VISIBILITY` visible.
    """
    canvas = draw_canvas(rng, height, width)
    layers = _Layers(height, width)
    if rng.random() < _CROWD_RATE:
        centre = rng.uniform(0, 1, 2) * (width, height)
        spread = rng.uniform(10, max(12, 0.15 * min(height, width)))
        crowd = crowd_cluster(rng, centre, spread, height, width)
        if crowd is not None:
            thing = SceneObject(CATEGORY_ID_BY_NAME["circle"], crowd, True, True)
            layers.place(rng, canvas.image, thing)
    num_objects = 0 if rng.random() < _EMPTY_IMAGE_RATE else int(rng.integers(1, MAX_OBJECTS + 1))
    for _ in range(num_objects):
        for _ in range(_PLACEMENT_TRIES):
            thing = _propose(rng, height, width)
            if thing is not None and layers.place(rng, canvas.image, thing):
                break
    return Scene(canvas.image, canvas.stuff, layers.owner, layers.objects)
