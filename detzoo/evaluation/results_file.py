"""COCO results files: the ``coco_instances_results.json`` that Detectron2's ``COCOEvaluator``
writes into its output folder.

Detectron2 saves each evaluation's detections as a list of COCO result records. Evaluation servers
take this file, and pycocotools re-scores it (``COCO(gt_json).loadRes(path)``).
:class:`CocoResultsWriter` collects the records over an evaluation run, from every rank, and
writes the file. LVIS results (``lvis_instances_results.json``) use the same records.

The records are :func:`~detzoo.evaluation.coco_format.prediction_records`' (Detectron2's
``instances_to_coco_json``'s), the same ones :class:`~detzoo.evaluation.CocoEvaluator` scores:
``{"image_id", "category_id", "bbox", "score"}``, plus ``"segmentation"`` (compressed RLE with
``counts`` as a str) for mask models and ``"keypoints"`` (``[x, y, score] * K``) for keypoint
models. ``category_id`` is the annotation file's id, not detzoo's contiguous label. To re-score
masks, drop ``bbox`` from the records first, as Detectron2 does: when a record has a ``bbox``,
pycocotools takes the detection's area (which decides APs/APm/APl) from its box instead of its
mask.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from detzoo.evaluation.coco_format import prediction_records
from detzoo.evaluation.distributed import all_gather_list, is_main_process

#: results file name of COCO-format datasets (Detectron2's ``COCOEvaluator``)
COCO_RESULTS_FILE = "coco_instances_results.json"
#: results file name of LVIS datasets (Detectron2's ``LVISEvaluator``)
LVIS_RESULTS_FILE = "lvis_instances_results.json"

_LOGGER = logging.getLogger("detzoo.evaluation")


def category_ids_by_label(
    dataset_id_to_contiguous_id: Mapping[int, int], first_label: int = 0
) -> list[int]:
    """The dataset category id of each contiguous label, in label order: the inverse of a
    dataset's ``thing_dataset_id_to_contiguous_id`` (labels from 0), or of its
    ``stuff_dataset_id_to_contiguous_id`` (semantic channels from 1: pass ``first_label=1``).

    Raises:
        ValueError: the map does not give the labels ``first_label, first_label + 1, ...`` once
            each, so it cannot be inverted into a list.
    """
    by_label = {
        int(label): int(category) for category, label in dataset_id_to_contiguous_id.items()
    }
    labels = list(range(first_label, first_label + len(dataset_id_to_contiguous_id)))
    if sorted(by_label) != labels:
        raise ValueError(
            f"the dataset's category map {dict(dataset_id_to_contiguous_id)} must give the labels "
            f"{labels} once each, so that labels can be mapped back to category ids"
        )
    return [by_label[label] for label in labels]


def target_image_id(target: Mapping[str, Any], index: int) -> int:
    """The dataset ``image_id`` of evaluation target ``index`` (an int or a 0-d tensor)."""
    if "image_id" not in target:
        raise ValueError(
            f"evaluation target {index} has no 'image_id': results files name every image by its "
            f"id in the dataset (detzoo's datasets set it)"
        )
    return int(target["image_id"])


def write_json(path: Path, content: Any) -> None:
    """Writes ``content`` as json to ``path``, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content))


class CocoResultsWriter:
    """Writes an evaluation run's predictions as a COCO results file, as Detectron2's
    ``COCOEvaluator(output_dir=...)`` does.

    It has the evaluators' interface but computes no metric. :meth:`update` turns each image's
    prediction into records. :meth:`compute` gathers the records of every rank (every rank must
    call it), has rank 0 write them to ``path``, and returns ``{}``.

    Args:
        path: the json file to write; its folder is created.
        category_ids: ``category_ids[label]`` is the dataset category id of a contiguous label
            (see :func:`category_ids_by_label`). None writes the labels themselves, as Detectron2
            does for datasets without a category map.
        keypoint_offset: pixels subtracted from keypoint x and y. Use the offset the dataset
            reader added to the annotation file's pixel-index coordinates: 0.5 for
            :class:`detzoo.data.CocoKeypoints`, the same 0.5 Detectron2 subtracts. The records
            are then in the annotation file's frame, so pycocotools scores them as detzoo's
            :class:`~detzoo.evaluation.KeypointEvaluator` does (it compares in the reader's frame).

    Inputs to :meth:`update`, one dict per image:
        preds: detzoo's prediction dicts at the image's original size: ``boxes`` float ``[N, 4]``
            XYXY pixels, ``scores`` float ``[N]``, ``labels`` int64 ``[N]`` (contiguous), and
            optionally ``masks`` bool ``[N, H, W]`` and ``keypoints`` float ``[N, K, 3]`` (x, y
            in pixels, score).
        targets: the image's dataset ``image_id`` (an int or a 0-d tensor); no other target
            field is read.
    """

    def __init__(
        self,
        path: str | Path,
        category_ids: Sequence[int] | None = None,
        keypoint_offset: float = 0.0,
    ) -> None:
        self.path = Path(path)
        self.category_ids = list(category_ids) if category_ids is not None else None
        self.keypoint_offset = keypoint_offset
        self._records: list[dict[str, Any]] = []

    def update(
        self, preds: Sequence[Mapping[str, Tensor]], targets: Sequence[Mapping[str, Any]]
    ) -> None:
        """Add a batch of images; see the class docstring for the dict contents."""
        if len(preds) != len(targets):
            raise ValueError(f"got {len(preds)} predictions for {len(targets)} targets")
        for i, (pred, target) in enumerate(zip(preds, targets)):
            self._records += prediction_records(
                self._in_file_frame(pred), target_image_id(target, i), self.category_ids
            )

    def _in_file_frame(self, pred: Mapping[str, Tensor]) -> Mapping[str, Tensor]:
        """``pred`` with its keypoints moved back by ``keypoint_offset``."""
        if "keypoints" not in pred or self.keypoint_offset == 0:
            return pred
        keypoints = pred["keypoints"].detach().cpu().clone()
        keypoints[..., :2] -= self.keypoint_offset
        return {**pred, "keypoints": keypoints}

    def compute(self) -> dict[str, float]:
        """Writes the records of every image seen on every rank (rank 0 writes); no metrics."""
        records = all_gather_list(self._records)
        if is_main_process():
            write_json(self.path, records)
            _LOGGER.info("wrote %d COCO results to %s", len(records), self.path)
        return {}

    def reset(self) -> None:
        """Forget all images."""
        self._records = []
