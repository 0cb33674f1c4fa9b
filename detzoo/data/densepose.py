"""DensePose-COCO reader (``densepose_*.json``: COCO person annotations plus ``dp_*`` fields).

``target["densepose"]`` is a list with one entry per instance: ``None`` for instances without
DensePose points, else a dict of tensors:

=========  =============  ===========================================================
key        dtype, shape   meaning
=========  =============  ===========================================================
x, y       float32 [P]    point positions in image pixels (the file's ``dp_x``, ``dp_y``
                          live in a 256 x 256 frame over the bbox; mapped here)
I          int64 [P]      fine body-part index, 1..24
U, V       float32 [P]    surface coordinates in [0, 1] on part ``I``
segm       uint8 [S, S]   coarse part index 0..14 (0 = background) over ``segm_box``,
                          from the 14 ``dp_masks`` RLEs (S = 256)
segm_box   float32 [4]    XYXY pixels of the frame ``segm`` covers (the annotated bbox,
                          transformed with the image but never clipped)
=========  =============  ===========================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pycocotools import mask as mask_utils

from .coco import CocoDetection
from .dataset import Sample, Transform

if TYPE_CHECKING:
    from detzoo.evaluation.surfaces import SurfaceDistance

DENSEPOSE_FRAME = 256  # dp_x, dp_y and dp_masks are in a 256 x 256 frame over the bbox
NUM_COARSE_PARTS = 14
_POINT_FIELDS = ("dp_x", "dp_y", "dp_I", "dp_U", "dp_V")


class CocoDensePose(CocoDetection):
    """:class:`CocoDetection` plus ``target["densepose"]`` (see the module docstring). Takes
    :class:`CocoDetection`'s arguments, and ``densepose_surface``: the body surface DensePose AP
    measures geodesic distances on (a :class:`detzoo.evaluation.SurfaceDistance`, e.g.
    :class:`detzoo.evaluation.SMPLGeodesics` for DensePose-COCO), kept as the attribute of that
    name; ``None``: the dataset is not evaluated with DensePose AP."""

    def __init__(
        self,
        image_root: str | Path,
        annotation_json: str | Path,
        *,
        transforms: Transform | None = None,
        with_masks: bool = True,
        filter_empty: bool = False,
        densepose_surface: SurfaceDistance | None = None,
    ) -> None:
        super().__init__(
            image_root,
            annotation_json,
            transforms=transforms,
            with_masks=with_masks,
            filter_empty=filter_empty,
        )
        self.densepose_surface = densepose_surface

    def annotation_fields(self, ann: dict, image_info: dict) -> dict:
        fields = super().annotation_fields(ann, image_info)
        if "dp_x" not in ann:
            fields["densepose"] = None
            return fields
        where = f"{self.annotation_json}: annotation id {ann.get('id')}"
        lengths = {name: len(ann.get(name, [])) for name in _POINT_FIELDS}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"{where} has dp_* lists of different lengths {lengths}")
        masks = ann.get("dp_masks")
        if not isinstance(masks, list) or len(masks) != NUM_COARSE_PARTS:
            raise ValueError(f"{where} needs dp_masks, a list of {NUM_COARSE_PARTS} RLEs (or [])")
        x, y, w, h = ann["bbox"]
        fields["densepose"] = {
            "x": np.asarray(ann["dp_x"], np.float32) / DENSEPOSE_FRAME * w + x,
            "y": np.asarray(ann["dp_y"], np.float32) / DENSEPOSE_FRAME * h + y,
            "I": np.asarray(ann["dp_I"], np.int64),
            "U": np.asarray(ann["dp_U"], np.float32),
            "V": np.asarray(ann["dp_V"], np.float32),
            "masks": masks,
            "segm_box": np.array([x, y, x + w, y + h], np.float32),
        }
        return fields

    def build_sample(self, record: dict, image: np.ndarray) -> Sample:
        sample = super().build_sample(record, image)
        sample["densepose"] = [_decode(a["densepose"]) for a in record["annotations"]]
        return sample


def _decode(annotation: dict | None) -> dict | None:
    if annotation is None:
        return None
    segm = np.zeros((DENSEPOSE_FRAME, DENSEPOSE_FRAME), np.uint8)
    for part, rle in enumerate(annotation["masks"], start=1):
        if rle:
            segm[mask_utils.decode(rle) > 0] = part
    decoded = {k: v for k, v in annotation.items() if k != "masks"}
    decoded["segm"] = segm
    return decoded
