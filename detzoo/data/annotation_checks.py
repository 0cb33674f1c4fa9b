"""Cheap up-front checks of COCO-style annotations, so that bad input fails at dataset
construction with a message naming the file and annotation, not later inside a worker with a
pycocotools trace."""

from __future__ import annotations

import math
import warnings
from typing import Any


def check_category(ann: dict, id_map: dict[int, int], source: str) -> int:
    """The contiguous label of ``ann``'s ``category_id``; ValueError if the id is unknown."""
    category_id = ann.get("category_id")
    if category_id not in id_map:
        raise ValueError(
            f"{source}: annotation id {ann.get('id')} has category_id {category_id}, which is not "
            f"in the file's categories {sorted(id_map)}; fix the annotation or add the category"
        )
    return id_map[category_id]


def check_bbox(ann: dict, source: str) -> bool:
    """Validate ``ann["bbox"]`` (COCO ``[x, y, w, h]`` pixels); return False if it is degenerate
    (zero width or height), True if usable.

    Raises:
        ValueError: the box is missing, not 4 finite numbers, or has negative width or height.
    """
    bbox = ann.get("bbox")
    if (
        not isinstance(bbox, (list, tuple))
        or len(bbox) != 4
        or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox)
    ):
        raise ValueError(
            f"{source}: annotation id {ann.get('id')} has bbox {bbox!r}; expected 4 finite "
            "numbers [x, y, width, height] in pixels"
        )
    if bbox[2] < 0 or bbox[3] < 0:
        raise ValueError(
            f"{source}: annotation id {ann.get('id')} has bbox {bbox} with negative width or "
            "height; COCO boxes are [x, y, width, height] with width, height >= 0"
        )
    return bbox[2] > 0 and bbox[3] > 0


def check_segmentation(ann: dict, height: int, width: int, source: str) -> Any:
    """Validate and return ``ann["segmentation"]``: polygons of >= 3 points (an even number of
    coordinates each) or an RLE dict whose ``size`` is the image's ``[height, width]``."""
    segmentation = ann.get("segmentation")
    where = f"{source}: annotation id {ann.get('id')}"
    if isinstance(segmentation, list):
        if not segmentation:
            raise ValueError(f"{where} has an empty polygon list; drop it or give a polygon")
        for polygon in segmentation:
            if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
                count = len(polygon) if isinstance(polygon, list) else "no"
                raise ValueError(
                    f"{where} has a polygon with {count} coordinates; a polygon needs >= 3 "
                    "points given as a flat [x0, y0, x1, y1, ...] list"
                )
        return segmentation
    if isinstance(segmentation, dict) and {"size", "counts"} <= segmentation.keys():
        if list(segmentation["size"]) != [height, width]:
            raise ValueError(
                f"{where} has an RLE of size {segmentation['size']} but its image is "
                f"[{height}, {width}] (height, width)"
            )
        return segmentation
    raise ValueError(
        f"{where} has segmentation of type {type(segmentation).__name__}; expected a list of "
        "polygons or an RLE dict with 'size' and 'counts' (or pass with_masks=False)"
    )


def warn_degenerate(num_degenerate: int, source: str) -> None:
    """One warning counting the annotations dropped for zero-area boxes."""
    if num_degenerate:
        warnings.warn(
            f"{source}: dropped {num_degenerate} annotations with zero-area boxes", stacklevel=4
        )


def filter_empty_images(records: list[dict], source: str) -> list[dict]:
    """``records`` without the images that have no non-crowd annotation — none at all, or crowd
    regions only — with one warning counting them: Detectron2's training filter
    (``DATALOADER.FILTER_EMPTY_ANNOTATIONS``, ``filter_images_with_only_crowd_annotations``).

    Raises:
        ValueError: if no image is left (naming ``source``).
    """
    kept = [r for r in records if any(a["iscrowd"] == 0 for a in r["annotations"])]
    if not kept and records:
        raise ValueError(
            f"{source}: none of its {len(records)} images has a non-crowd annotation, so nothing "
            "is left to train on after dropping images without objects; check the file, or keep "
            "them with filter_empty=False (filter_empty_annotations: false in a data module)"
        )
    if len(kept) < len(records):
        warnings.warn(
            f"{source}: skipped {len(records) - len(kept)} of {len(records)} images that have no "
            "non-crowd annotation (empty or crowd-only), as Detectron2 does for training; "
            "filter_empty=False (a data module's filter_empty_annotations=False) keeps them",
            stacklevel=4,
        )
    return kept
