"""LVIS v1 reader: COCO-format json with per-image label lists and category frequencies."""

from __future__ import annotations

import os
from urllib.parse import urlparse

import torch

from .coco import CocoDetection


class LvisDetection(CocoDetection):
    """LVIS v1 boxes and masks; takes :class:`CocoDetection`'s arguments.

    LVIS images carry no ``file_name``; as in Detectron2, an image
    ``http://images.cocodataset.org/train2017/000000391895.jpg`` is read from
    ``image_root/train2017/000000391895.jpg`` (so ``image_root`` is the COCO directory).

    Extra target entries: ``neg_labels`` and ``not_exhaustive_labels`` int64 ``[K]``, the
    contiguous labels (the id space of ``labels`` and of the predictions, not LVIS category ids)
    of the image's ``neg_category_ids`` (verified absent) and ``not_exhaustive_category_ids``
    (not all instances annotated). :class:`detzoo.evaluation.LVISEvaluator` reads them under
    these names to apply LVIS's federated rules.

    Attributes:
        category_frequency: ``"r"``, ``"c"`` or ``"f"`` (rare / common / frequent) per label;
            a model evaluating a dataset that has it builds an ``LVISEvaluator`` with it.
    """

    def image_path(self, image_info: dict) -> str:
        if "coco_url" in image_info:
            split_dir, name = urlparse(image_info["coco_url"]).path.split("/")[-2:]
            return os.path.join(self.image_root, split_dir, name)
        return super().image_path(image_info)

    def image_fields(self, image_info: dict, id_map: dict[int, int]) -> dict:
        fields = {}
        for key, out in (
            ("neg_category_ids", "neg_labels"),
            ("not_exhaustive_category_ids", "not_exhaustive_labels"),
        ):
            unknown = [c for c in image_info.get(key, []) if c not in id_map]
            if unknown:
                raise ValueError(
                    f"{self.annotation_json}: image id {image_info['id']} lists {key} {unknown} "
                    "that are not in the categories"
                )
            fields[out] = [id_map[c] for c in image_info.get(key, [])]
        return fields

    @property
    def category_frequency(self) -> list[str]:
        return [c.get("frequency", "f") for c in self.categories]

    def extra_target(self, record: dict) -> dict:
        return {
            key: torch.tensor(record[key], dtype=torch.int64)
            for key in ("neg_labels", "not_exhaustive_labels")
        }
