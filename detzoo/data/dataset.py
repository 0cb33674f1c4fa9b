"""The reader-independent half of every detzoo dataset: image loading, target assembly, tensors.

A reader (COCO, LVIS, panoptic, DensePose, VOC) parses and validates its annotation files once,
at construction, into *records* (one plain dict per image, Detectron2's "dataset dicts")::

    {"image_id": int, "file_name": str (path), "height": int, "width": int,
     "annotations": [{"id": int, "bbox": [x0, y0, x1, y1] (pixels), "label": int (contiguous),
                      "iscrowd": 0 | 1, "area": float (pixels^2), ...reader-specific keys}]}

:class:`DetectionDataset` then loads one record per item: decode and check the image, build the
numpy *sample* the transforms work on, transform, and convert to the tensor ``(image, target)``
of DESIGN.md. Readers extend :meth:`DetectionDataset.build_sample` and
:meth:`DetectionDataset.extra_target` for their own fields.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .image_file import read_image_file

Sample = dict[str, Any]
Transform = Callable[[Sample], Sample]


def load_image(path: str, height: int, width: int, image_id: int | None = None) -> np.ndarray:
    """uint8 ``[H, W, 3]`` RGB image at ``path``, checked to be whole and of the annotated size.

    Raises:
        FileNotFoundError: the file does not exist.
        CorruptImageError: the file is empty, truncated or cannot be decoded (an ``OSError``).
        ValueError: its size differs from the annotation file's ``height`` x ``width``.
    """
    image = read_image_file(path, image_id)
    if image.shape[:2] != (height, width):
        raise ValueError(
            f"image file {path} is {image.shape[0]}x{image.shape[1]} (HxW) on disk but the "
            f"annotations (image id {image_id}) say {height}x{width}; fix the annotation file or "
            "the image"
        )
    return image


def _instance_arrays(annotations: list[dict]) -> Sample:
    return {
        "boxes": np.array([a["bbox"] for a in annotations], np.float32).reshape(-1, 4),
        "labels": np.array([a["label"] for a in annotations], np.int64),
        "iscrowd": np.array([a["iscrowd"] for a in annotations], np.int64),
        "area": np.array([a["area"] for a in annotations], np.float32),
    }


def _to_tensor(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, dict):
        return {k: _to_tensor(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_tensor(v) for v in value]
    return value


class DetectionDataset(Dataset):
    """Map-style dataset of ``(image, target)`` pairs (DESIGN.md's contract).

    ``image`` is uint8 ``[3, H, W]`` RGB; ``target`` has ``boxes`` float32 ``[N, 4]`` XYXY pixels,
    ``labels`` int64 ``[N]`` in ``[0, num_classes)``, ``iscrowd`` int64 ``[N]`` (1 = ignore
    region), ``area`` float32 ``[N]`` (annotated area in pixels^2 times the transform's area
    scale), ``image_id`` int, ``orig_size`` ``(H, W)`` of the file on disk, ``file_name`` str, and
    reader-specific fields (``masks``, ``keypoints``, ``sem_seg``, ``densepose``, ...).

    Attributes:
        records: one dict per image (see the module docstring).
        class_names: thing class names in contiguous label order.
        thing_dataset_id_to_contiguous_id: the annotation file's category id -> label.
    """

    def __init__(
        self,
        records: list[dict],
        class_names: list[str],
        thing_dataset_id_to_contiguous_id: dict[int, int],
        transforms: Transform | None = None,
    ) -> None:
        self.records = records
        self.class_names = class_names
        self.thing_dataset_id_to_contiguous_id = thing_dataset_id_to_contiguous_id
        self.transforms = transforms

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def aspect_ratio_is_landscape(self, index: int) -> bool:
        """Whether image ``index`` is at least as wide as tall (from the annotations, no I/O)."""
        record = self.records[index]
        return record["width"] >= record["height"]

    def image_labels(self, index: int) -> set[int]:
        """Contiguous labels annotated in image ``index`` (for repeat-factor sampling; no I/O)."""
        return {a["label"] for a in self.records[index]["annotations"]}

    def build_sample(self, record: dict, image: np.ndarray) -> Sample:
        """The numpy sample of one image before transforms: ``image`` uint8 ``[H, W, 3]``,
        ``boxes`` float32 ``[N, 4]``, ``labels``/``iscrowd`` int64 ``[N]``, ``area`` float32
        ``[N]``; readers add their fields (see :mod:`detzoo.data.transforms` for the keys)."""
        return {"image": image, **_instance_arrays(record["annotations"])}

    def extra_target(self, record: dict) -> dict[str, Any]:
        """Per-image target entries not touched by transforms (e.g. LVIS label lists)."""
        return {}

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, Any]]:
        record = self.records[index]
        image = load_image(
            record["file_name"], record["height"], record["width"], record["image_id"]
        )
        sample = self.build_sample(record, image)
        if self.transforms is not None:
            sample = self.transforms(sample)
        sample.pop("keypoint_flip_indices", None)
        image_tensor = torch.from_numpy(np.ascontiguousarray(sample.pop("image"))).permute(2, 0, 1)
        target = _to_tensor(sample)
        if "sem_seg" in target:
            target["sem_seg"] = target["sem_seg"].long()
        target.update(self.extra_target(record))
        target["image_id"] = record["image_id"]
        target["orig_size"] = (record["height"], record["width"])
        target["file_name"] = record["file_name"]
        return image_tensor, target
