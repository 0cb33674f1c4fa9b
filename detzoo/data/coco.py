"""COCO instance-segmentation reader (``instances_*.json``), the base of the COCO-family readers."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from detzoo.structures import segmentations_to_bitmaps

from .annotation_checks import (
    check_bbox,
    check_category,
    check_segmentation,
    filter_empty_images,
    warn_degenerate,
)
from .dataset import DetectionDataset, Sample, Transform


def load_coco_api(annotation_json: str | Path) -> COCO:
    """pycocotools' ``COCO`` index of a json file, without its progress prints."""
    path = Path(annotation_json)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            return COCO(str(path))
        except ValueError as error:  # json.JSONDecodeError
            raise ValueError(f"annotation file {path} is not valid json: {error}") from error


class CocoDetection(DetectionDataset):
    """COCO-format boxes and instance masks (polygons, RLE; crowd regions kept with iscrowd=1).

    Args:
        image_root: directory the images' ``file_name`` are relative to.
        annotation_json: a COCO instances json.
        transforms: a callable on numpy samples (see :mod:`detzoo.data.transforms`).
        with_masks: decode ``segmentation`` into ``target["masks"]`` uint8 ``[N, H, W]``.
        filter_empty: drop images without any non-crowd annotation (none, or crowd regions only),
            with a warning counting them — Detectron2's ``DATALOADER.FILTER_EMPTY_ANNOTATIONS``
            for training sets. False keeps every image (an empty one trains as all background).

    Raises:
        FileNotFoundError / ValueError: at construction, for a missing or malformed json, an
            unknown category id, a negative-size box, a polygon with < 3 points or an RLE of the
            wrong size, each naming the annotation id. Zero-area boxes are dropped with a
            warning giving their count. Image files are checked when loaded.
    """

    def __init__(
        self,
        image_root: str | Path,
        annotation_json: str | Path,
        *,
        transforms: Transform | None = None,
        with_masks: bool = True,
        filter_empty: bool = False,
    ) -> None:
        self.image_root = str(image_root)
        self.annotation_json = str(annotation_json)
        self.with_masks = with_masks
        coco = load_coco_api(annotation_json)
        categories = sorted(coco.dataset.get("categories", []), key=lambda c: c["id"])
        id_map = {c["id"]: label for label, c in enumerate(categories)}
        self.categories = categories
        records = self._build_records(coco, id_map, filter_empty)
        super().__init__(records, [c["name"] for c in categories], id_map, transforms)

    def image_path(self, image_info: dict) -> str:
        """Path of an image entry's file (LVIS overrides this: it names files by ``coco_url``)."""
        if "file_name" not in image_info:
            raise ValueError(
                f"{self.annotation_json}: image id {image_info.get('id')} has no file_name"
            )
        return os.path.join(self.image_root, image_info["file_name"])

    def annotation_fields(self, ann: dict, image_info: dict) -> dict:
        """Reader-specific validated fields of one annotation, stored in its record."""
        fields = {}
        if self.with_masks:
            fields["segmentation"] = check_segmentation(
                ann, image_info["height"], image_info["width"], self.annotation_json
            )
        return fields

    def _build_records(self, coco: COCO, id_map: dict[int, int], filter_empty: bool) -> list:
        source = self.annotation_json
        for ann in coco.dataset.get("annotations", []):
            if ann.get("image_id") not in coco.imgs:
                raise ValueError(
                    f"{source}: annotation id {ann.get('id')} refers to image_id "
                    f"{ann.get('image_id')}, which is not in the file's images"
                )
        records, num_degenerate = [], 0
        for image_id in sorted(coco.imgs):
            info = coco.imgs[image_id]
            if not all(isinstance(info.get(key), int) for key in ("height", "width")):
                raise ValueError(f"{source}: image id {image_id} needs integer height and width")
            annotations = []
            for ann in coco.imgToAnns.get(image_id, []):
                label = check_category(ann, id_map, source)
                if not check_bbox(ann, source):
                    num_degenerate += 1
                    continue
                x, y, w, h = ann["bbox"]
                annotations.append(
                    {
                        "id": ann.get("id"),
                        "bbox": [x, y, x + w, y + h],
                        "label": label,
                        "iscrowd": int(ann.get("iscrowd", 0)),
                        "area": float(ann.get("area", w * h)),
                        **self.annotation_fields(ann, info),
                    }
                )
            records.append(
                {
                    "image_id": image_id,
                    "file_name": self.image_path(info),
                    "height": info["height"],
                    "width": info["width"],
                    "annotations": annotations,
                    **self.image_fields(info, id_map),
                }
            )
        warn_degenerate(num_degenerate, source)
        return filter_empty_images(records, source) if filter_empty else records

    def image_fields(self, image_info: dict, id_map: dict[int, int]) -> dict:
        """Reader-specific per-image fields stored in the record (LVIS label lists)."""
        return {}

    def build_sample(self, record: dict, image: np.ndarray) -> Sample:
        sample = super().build_sample(record, image)
        if self.with_masks:
            segmentations = [a["segmentation"] for a in record["annotations"]]
            sample["masks"] = segmentations_to_bitmaps(
                segmentations, record["height"], record["width"]
            )
        return sample
