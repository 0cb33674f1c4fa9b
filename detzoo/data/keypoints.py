"""COCO keypoints reader (``person_keypoints_*.json``)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from detzoo.structures import flip_indices
from detzoo.structures import keypoint_flip_map as flip_map_from_names

from .coco import CocoDetection
from .dataset import Sample, Transform


class CocoKeypoints(CocoDetection):
    """:class:`CocoDetection` plus ``target["keypoints"]`` float32 ``[N, K, 3]`` (x, y in pixels,
    visibility 0 = unlabeled, 1 = labeled but hidden, 2 = visible; unlabeled points are all 0).

    Like Detectron2, ``keypoint_offset`` (0.5) is added to labeled x, y: COCO stores integer
    pixel indices, and 0.5 moves them to pixel centres of the continuous frame boxes live in.
    Pass 0.0 for files with continuous coordinates. Annotations without ``keypoints`` get K
    unlabeled points.

    ``keypoint_oks_sigmas`` (K floats) are the dataset's per-keypoint OKS sigmas for keypoint AP
    (Detectron2's ``TEST.KEYPOINT_OKS_SIGMAS``); ``None`` leaves evaluation to COCO's 17 person
    sigmas. ``min_keypoints_per_image`` drops images with fewer labelled keypoints (all
    annotations together), with a warning: Detectron2's ``MIN_KEYPOINTS_PER_IMAGE`` (1) for
    training sets.

    Attributes:
        keypoint_names: the K names of the (first) category listing ``keypoints``.
        keypoint_flip_map: ``(left, right)`` name pairs swapped by a horizontal flip, derived from
            the names unless given.
        keypoint_oks_sigmas: the K OKS sigmas given, or None.
    """

    def __init__(
        self,
        image_root: str | Path,
        annotation_json: str | Path,
        *,
        transforms: Transform | None = None,
        with_masks: bool = True,
        filter_empty: bool = False,
        keypoint_flip_map: list[tuple[str, str]] | None = None,
        keypoint_offset: float = 0.5,
        keypoint_oks_sigmas: Sequence[float] | None = None,
        min_keypoints_per_image: int = 0,
    ) -> None:
        self.keypoint_offset = keypoint_offset
        super().__init__(
            image_root,
            annotation_json,
            transforms=transforms,
            with_masks=with_masks,
            filter_empty=filter_empty,
        )
        if keypoint_flip_map is None:
            keypoint_flip_map = flip_map_from_names(self.keypoint_names)
        self.keypoint_flip_map = [tuple(pair) for pair in keypoint_flip_map]
        self.keypoint_flip_indices = flip_indices(self.keypoint_names, self.keypoint_flip_map)
        if keypoint_oks_sigmas is not None and len(keypoint_oks_sigmas) != len(self.keypoint_names):
            raise ValueError(
                f"{self.annotation_json}: {len(keypoint_oks_sigmas)} keypoint_oks_sigmas for "
                f"{len(self.keypoint_names)} keypoints {self.keypoint_names}"
            )
        self.keypoint_oks_sigmas = (
            [float(s) for s in keypoint_oks_sigmas] if keypoint_oks_sigmas is not None else None
        )
        if min_keypoints_per_image > 0:
            self.records = self._with_enough_keypoints(self.records, min_keypoints_per_image)

    def _with_enough_keypoints(self, records: list[dict], minimum: int) -> list[dict]:
        """Detectron2's ``filter_images_with_few_keypoints``."""
        kept = [
            r
            for r in records
            if sum(int((a["keypoints"][:, 2] > 0).sum()) for a in r["annotations"]) >= minimum
        ]
        if len(kept) < len(records):
            warnings.warn(
                f"{self.annotation_json}: skipped {len(records) - len(kept)} of {len(records)} "
                f"images with fewer than {minimum} labelled keypoints (Detectron2's "
                "MIN_KEYPOINTS_PER_IMAGE)",
                stacklevel=3,
            )
        return kept

    @property
    def keypoint_names(self) -> list[str]:
        named = [c for c in self.categories if c.get("keypoints")]
        if not named:
            raise ValueError(
                f"{self.annotation_json}: no category lists 'keypoints' names; is this a COCO "
                "keypoints file?"
            )
        return list(named[0]["keypoints"])

    def annotation_fields(self, ann: dict, image_info: dict) -> dict:
        fields = super().annotation_fields(ann, image_info)
        num_keypoints = len(self.keypoint_names)
        flat = ann.get("keypoints", [0] * (3 * num_keypoints))
        if len(flat) != 3 * num_keypoints:
            raise ValueError(
                f"{self.annotation_json}: annotation id {ann.get('id')} has {len(flat)} keypoint "
                f"values; expected 3 x {num_keypoints} (x, y, visibility per keypoint)"
            )
        keypoints = np.array(flat, np.float32).reshape(num_keypoints, 3)
        labeled = keypoints[:, 2] > 0
        keypoints[labeled, :2] += self.keypoint_offset
        keypoints[~labeled] = 0
        fields["keypoints"] = keypoints
        return fields

    def build_sample(self, record: dict, image: np.ndarray) -> Sample:
        sample = super().build_sample(record, image)
        keypoints = [a["keypoints"] for a in record["annotations"]]
        shape = (len(keypoints), len(self.keypoint_names), 3)
        sample["keypoints"] = np.stack(keypoints) if keypoints else np.zeros(shape, np.float32)
        sample["keypoint_flip_indices"] = self.keypoint_flip_indices
        return sample
