"""Skipping images whose files are corrupt, and saying which (``skip_corrupt_images=True``).

By default a corrupt image file stops training or evaluation with a
:class:`~detzoo.data.image_file.CorruptImageError` naming it. With skipping on, the dataset
returns a :class:`SkippedImage` in its place; collation drops it from the batch and keeps it in
:attr:`~detzoo.data.collate.DetectionBatch.skipped`, and the model counts and names the skipped
images at the end of each epoch (``train/skipped_images``, ``val/skipped_images``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch.utils.data import Dataset

from .image_file import CorruptImageError


@dataclass  # not frozen: Lightning's apply_to_collection refuses frozen dataclasses
class SkippedImage:
    """An image left out of its batch: its file, the dataset's image id, and why."""

    file_name: str
    image_id: int | None
    reason: str


class SkipCorruptImages(Dataset):
    """``dataset[key]``, or a :class:`SkippedImage` where its image file is corrupt.

    Only corrupt files are skipped: a missing file, a size that disagrees with the annotations or
    a bad annotation still raises (those are errors of the dataset, not of one image).
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> Any:
        try:
            return self.dataset[key]
        except CorruptImageError as error:
            return SkippedImage(error.path, error.image_id, error.reason)
