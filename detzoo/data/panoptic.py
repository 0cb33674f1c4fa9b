"""COCO panoptic reader (``panoptic_*.json`` + PNGs of segment ids).

Targets, as Detectron2's Panoptic FPN trains on them:

- instance targets (``boxes``, ``labels``, ``iscrowd``, ``area``, ``masks``) from the segments of
  *thing* categories, labels contiguous over things (``class_names``);
- ``sem_seg`` int64 ``[H, W]`` with all things merged into ONE channel: value 0 = any thing,
  ``1 + i`` = the i-th *stuff* category in id order (``stuff_class_names[i]``), 255 = void
  (unlabeled pixels). The semantic head thus has ``1 + len(stuff_class_names)`` classes, listed
  in order by ``sem_seg_class_names``.

pycocotools has no panoptic loader (its ``COCO`` index needs per-annotation ids), so the json
is read with :mod:`json` and validated here; segment masks come from the PNG (id = R + 256 G +
256^2 B).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from detzoo.structures.panoptic_ids import rgb2id

from .annotation_checks import check_bbox, check_category, filter_empty_images, warn_degenerate
from .dataset import DetectionDataset, Sample, Transform
from .image_file import read_image_file

THINGS_CHANNEL = 0
IGNORE_VALUE = 255


class CocoPanoptic(DetectionDataset):
    """COCO panoptic segmentation; see the module docstring for the targets.

    Args:
        image_root: directory of the images (``images[*].file_name``).
        annotation_json: the panoptic json.
        panoptic_root: directory of the segment-id PNGs (``annotations[*].file_name``).
        transforms, filter_empty: as in :class:`~detzoo.data.CocoDetection`.
    """

    def __init__(
        self,
        image_root: str | Path,
        annotation_json: str | Path,
        panoptic_root: str | Path,
        *,
        transforms: Transform | None = None,
        filter_empty: bool = False,
    ) -> None:
        self.annotation_json = str(annotation_json)
        path = Path(annotation_json)
        if not path.is_file():
            raise FileNotFoundError(f"annotation file {path} does not exist")
        content = json.loads(path.read_text())
        categories = sorted(content.get("categories", []), key=lambda c: c["id"])
        things = [c for c in categories if c.get("isthing", 1)]
        stuff = [c for c in categories if not c.get("isthing", 1)]
        if len(stuff) >= IGNORE_VALUE:
            raise ValueError(f"{path}: {len(stuff)} stuff categories do not fit in uint8 sem_seg")
        thing_map = {c["id"]: label for label, c in enumerate(things)}
        self.stuff_dataset_id_to_contiguous_id = {c["id"]: 1 + i for i, c in enumerate(stuff)}
        self.stuff_class_names = [c["name"] for c in stuff]
        self.sem_seg_class_names = ["things", *self.stuff_class_names]
        # sem_seg value of every category id: things share one channel.
        self._sem_value = {c: THINGS_CHANNEL for c in thing_map}
        self._sem_value.update(self.stuff_dataset_id_to_contiguous_id)
        records = self._build_records(content, str(image_root), str(panoptic_root), thing_map)
        if filter_empty:
            records = filter_empty_images(records, self.annotation_json)
        super().__init__(records, [c["name"] for c in things], thing_map, transforms)

    def _build_records(
        self, content: dict, image_root: str, panoptic_root: str, thing_map: dict[int, int]
    ) -> list[dict]:
        source = self.annotation_json
        images = {image["id"]: image for image in content.get("images", [])}
        records, num_degenerate = [], 0
        for ann in content.get("annotations", []):
            if ann.get("image_id") not in images:
                raise ValueError(
                    f"{source}: panoptic annotation {ann.get('file_name')} refers to "
                    f"image_id {ann.get('image_id')}, which is not in the images"
                )
            image = images[ann["image_id"]]
            instances, segments = [], []
            for segment in ann.get("segments_info", []):
                check_category(segment, self._sem_value, source)
                segments.append((segment["id"], self._sem_value[segment["category_id"]]))
                if segment["category_id"] not in thing_map:
                    continue
                if not check_bbox(segment, source):
                    num_degenerate += 1
                    continue
                x, y, w, h = segment["bbox"]
                instances.append(
                    {
                        "id": segment["id"],
                        "bbox": [x, y, x + w, y + h],
                        "label": thing_map[segment["category_id"]],
                        "iscrowd": int(segment.get("iscrowd", 0)),
                        "area": float(segment.get("area", w * h)),
                    }
                )
            records.append(
                {
                    "image_id": image["id"],
                    "file_name": os.path.join(image_root, image["file_name"]),
                    "height": image["height"],
                    "width": image["width"],
                    "annotations": instances,
                    "pan_seg_file": os.path.join(panoptic_root, ann["file_name"]),
                    "segments": segments,
                }
            )
        warn_degenerate(num_degenerate, source)
        return sorted(records, key=lambda r: r["image_id"])

    def build_sample(self, record: dict, image: np.ndarray) -> Sample:
        sample = super().build_sample(record, image)
        segment_ids = _read_segment_ids(record["pan_seg_file"], image.shape[:2])
        sem_seg = np.full(segment_ids.shape, IGNORE_VALUE, np.uint8)
        for segment_id, value in record["segments"]:
            sem_seg[segment_ids == segment_id] = value
        sample["sem_seg"] = sem_seg
        masks = np.zeros((len(record["annotations"]), *segment_ids.shape), np.uint8)
        for mask, instance in zip(masks, record["annotations"]):
            mask[segment_ids == instance["id"]] = 1
        sample["masks"] = masks
        return sample


def _read_segment_ids(path: str, size: tuple[int, int]) -> np.ndarray:
    """int64 ``[H, W]`` segment ids of a COCO panoptic PNG, checked against the image size."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"panoptic PNG {path} does not exist; check panoptic_root")
    rgb = read_image_file(path)  # whole, or a CorruptImageError naming it
    if rgb.shape[:2] != tuple(size):
        raise ValueError(
            f"panoptic PNG {path} is {rgb.shape[0]}x{rgb.shape[1]} (HxW) but its image is "
            f"{size[0]}x{size[1]}"
        )
    return rgb2id(rgb)
