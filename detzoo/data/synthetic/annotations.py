"""COCO, COCO-keypoints, COCO-panoptic and DensePose-COCO records of one composed scene.

Ids: image ``index`` (0-based, the file name's number) has ``image_id = index + 1``; its k-th
visible object (1-based, back to front) has annotation id ``image_id * 100 + k`` in every json
and is also its panoptic segment id; stuff category number ``j`` (0 sky, 1 ground, 2 water) has
panoptic segment id ``image_id * 100 + 90 + j``.
"""

import cv2
import numpy as np
import pycocotools.mask as mask_util

from detzoo.structures.panoptic_ids import id2rgb

from .canvas import VOID
from .categories import (
    FIGURE_CATEGORY_ID,
    FINE_PART_OF_COARSE,
    NUM_COARSE_PARTS,
    STUFF_CATEGORIES,
)
from .figure import surface_uv
from .scene import Scene, SceneObject

IDS_PER_IMAGE = 100
_STUFF_ID_OFFSET = 90
DENSEPOSE_POINTS = 100  # at most this many DensePose points per figure
DENSEPOSE_FRAME = 256  # dp_x, dp_y and dp_masks live in a 256 x 256 frame over the bbox
_SEGMENT_FIELDS = ("id", "category_id", "iscrowd", "bbox", "area")


def _rle_stats(mask: np.ndarray) -> tuple[dict, int, list[float]]:
    """Compressed RLE (json-ready), pixel area and tight [x, y, w, h] box of a bool mask."""
    rle = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    box = [float(v) for v in mask_util.toBbox(rle)]
    area = int(mask_util.area(rle))
    return (
        {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
        area,
        box,
    )


def _exact_polygons(crop: np.ndarray, y0: int, x0: int) -> list[list[float]] | None:
    """COCO polygons that pycocotools rasterises back to exactly ``crop``'s pixels, or None.

    Contours are traced on the mask upsampled 2x, so each polygon runs 1/4 px inside the pixel
    edges of the region: every pixel centre of the region is inside it and no other is. Masks
    this cannot reproduce (holes, one-pixel necks) return ``None`` and are written as RLE.
    """
    doubled = cv2.resize(crop, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(doubled, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polygons = [(c.reshape(-1, 2) + 0.5) / 2 for c in contours if len(c) >= 3]
    if not polygons:
        return None
    height, width = crop.shape
    flat = [p.ravel().tolist() for p in polygons]
    drawn = mask_util.decode(mask_util.merge(mask_util.frPyObjects(flat, height, width)))
    if not np.array_equal(drawn, crop):
        return None
    return [(p + (x0, y0)).ravel().tolist() for p in polygons]


def _keypoints(scene: Scene, k: int) -> list[float]:
    """COCO ``[x, y, v] * K``: v=2 visible, 1 covered by a later object, 0 outside (x=y=0).

    x, y follow COCO's convention of pixel indices (the continuous position minus 0.5), which
    readers undo as Detectron2 does (adding 0.5)."""
    height, width = scene.owner.shape
    flat: list[float] = []
    for x, y in scene.objects[k - 1].figure.keypoints:
        if not (0 <= x < width and 0 <= y < height):
            flat += [0.0, 0.0, 0]
            continue
        visible = scene.owner[int(y), int(x)] == k
        flat += [round(float(x) - 0.5, 2), round(float(y) - 0.5, 2), 2 if visible else 1]
    return flat


def _densepose(
    rng: np.random.Generator, scene: Scene, k: int, visible: np.ndarray, box: list[float]
) -> dict:
    """DensePose-COCO ``dp_*`` fields of figure ``k``, in the 256 x 256 frame of ``box``."""
    thing = scene.objects[k - 1]
    parts = np.zeros(visible.shape, np.uint8)
    rows, cols = thing.region.window
    parts[rows, cols] = np.where(visible[rows, cols], thing.region.mask, 0)
    ys, xs = np.nonzero(parts)
    chosen = np.sort(rng.choice(len(ys), min(DENSEPOSE_POINTS, len(ys)), replace=False))
    ys, xs = ys[chosen], xs[chosen]
    coarse = parts[ys, xs]
    centres = np.stack([xs, ys], 1) + 0.5
    u, v = np.zeros(len(ys)), np.zeros(len(ys))
    for part in np.unique(coarse):
        on_part = coarse == part
        u[on_part], v[on_part] = surface_uv(thing.figure.parts[int(part)], centres[on_part])
    bx, by, bw, bh = (int(round(c)) for c in box)
    frame = cv2.resize(
        parts[by : by + bh, bx : bx + bw],
        (DENSEPOSE_FRAME, DENSEPOSE_FRAME),
        interpolation=cv2.INTER_NEAREST,
    )
    masks = [
        _rle_stats(frame == part)[0] if np.any(frame == part) else []
        for part in range(1, NUM_COARSE_PARTS + 1)
    ]
    return {
        "dp_x": np.round((centres[:, 0] - bx) / bw * DENSEPOSE_FRAME, 2).tolist(),
        "dp_y": np.round((centres[:, 1] - by) / bh * DENSEPOSE_FRAME, 2).tolist(),
        "dp_I": [float(FINE_PART_OF_COARSE[int(p)]) for p in coarse],
        "dp_U": np.round(u, 4).tolist(),
        "dp_V": np.round(v, 4).tolist(),
        "dp_masks": masks,
    }


def _instance(scene: Scene, image_id: int, k: int, visible: np.ndarray) -> dict:
    thing: SceneObject = scene.objects[k - 1]
    rle, area, box = _rle_stats(visible)
    segmentation = rle
    if not (thing.iscrowd or thing.prefer_rle):
        rows, cols = thing.region.window
        polygons = _exact_polygons(visible[rows, cols].astype(np.uint8), rows.start, cols.start)
        segmentation = polygons if polygons is not None else rle
    return {
        "id": image_id * IDS_PER_IMAGE + k,
        "image_id": image_id,
        "category_id": thing.category_id,
        "segmentation": segmentation,
        "area": area,
        "bbox": box,
        "iscrowd": int(thing.iscrowd),
    }


def _segment_ids(scene: Scene, image_id: int) -> np.ndarray:
    """int64 ``[H, W]`` panoptic segment id per pixel (0 = void)."""
    base = image_id * IDS_PER_IMAGE
    thing_ids = base + np.arange(len(scene.objects) + 1, dtype=np.int64)
    stuff_ids = np.zeros(256, np.int64)
    stuff_ids[: len(STUFF_CATEGORIES)] = base + _STUFF_ID_OFFSET + np.arange(len(STUFF_CATEGORIES))
    stuff_ids[VOID] = 0
    return np.where(scene.owner > 0, thing_ids[scene.owner], stuff_ids[scene.stuff])


def scene_records(rng: np.random.Generator, scene: Scene, index: int) -> dict:
    """All json records of image ``index`` and its panoptic PNG.

    Returns:
        A dict with ``image`` (COCO image entry), ``instances`` (COCO annotations, things incl.
        crowds), ``keypoints`` (figure annotations with ``keypoints``, ``num_keypoints``),
        ``densepose`` (the same figure annotations plus ``dp_*`` fields), ``panoptic`` (COCO
        panoptic annotation) and ``panoptic_png`` (uint8 ``[H, W, 3]`` RGB, id = R + 256 G +
        256^2 B).
    """
    image_id = index + 1
    height, width = scene.owner.shape
    stem = f"{index:06d}"
    records = {
        "image": {"id": image_id, "file_name": f"{stem}.jpg", "height": height, "width": width},
        "instances": [],
        "keypoints": [],
        "densepose": [],
    }
    segments = []
    for k, thing in enumerate(scene.objects, start=1):
        visible = scene.owner == k
        instance = _instance(scene, image_id, k, visible)
        records["instances"].append(instance)
        segments.append({key: instance[key] for key in _SEGMENT_FIELDS})
        if thing.category_id == FIGURE_CATEGORY_ID:
            keypoints = _keypoints(scene, k)
            person = dict(
                instance, keypoints=keypoints, num_keypoints=sum(v > 0 for v in keypoints[2::3])
            )
            records["keypoints"].append(person)
            records["densepose"].append(
                dict(person, **_densepose(rng, scene, k, visible, instance["bbox"]))
            )
    ids = _segment_ids(scene, image_id)
    for j, category in enumerate(STUFF_CATEGORIES):
        segment_id = image_id * IDS_PER_IMAGE + _STUFF_ID_OFFSET + j
        region = ids == segment_id
        if region.any():
            _, area, box = _rle_stats(region)
            values = (segment_id, category["id"], 0, box, area)
            segments.append(dict(zip(_SEGMENT_FIELDS, values, strict=True)))
    records["panoptic"] = {
        "image_id": image_id,
        "file_name": f"{stem}.png",
        "segments_info": segments,
    }
    records["panoptic_png"] = id2rgb(ids)
    return records
