"""COCO box and mask AP: pycocotools' (or faster-coco-eval's) ``COCOeval`` on detzoo's dicts.

The per-image dicts are turned into the COCO json records Detectron2's evaluator writes and
``COCOeval`` runs on them with its own float64 thresholds, so the numbers are pycocotools' to the
last bit (torchmetrics' ``MeanAveragePrecision`` was used before: its float32 thresholds and float32
results moved AP by up to 4e-3 where recall lands on a threshold).
"""

import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pycocotools.mask as mask_util
from torch import Tensor

from detzoo.evaluation.coco_format import (
    Backend,
    encode_masks,
    prediction_records,
    run_cocoeval,
    to_numpy,
    xyxy_to_xywh,
)
from detzoo.evaluation.distributed import all_gather_list

IouType = Literal["bbox", "segm"]

# COCOeval.stats in its order, under Detectron2's key suffixes (AR: at 1/10/100 detections)
COCO_STAT_KEYS = (
    "AP",
    "AP50",
    "AP75",
    "APs",
    "APm",
    "APl",
    "AR1",
    "AR10",
    "AR100",
    "ARs",
    "ARm",
    "ARl",
)


class CocoEvaluator:
    """COCO-style detection (``bbox``) and instance segmentation (``segm``) AP.

    Runs ``COCOeval`` (pycocotools' or faster-coco-eval's) on the records Detectron2 would write,
    with ``iscrowd`` and the annotation ``area`` passed through, so results equal COCOeval run on
    the original annotation json and the results file, stat for stat. Returns Detectron2's
    key names, ``"<iou_type>/AP"``, ``/AP50``, ``/AP75``, ``/APs``, ``/APm``, ``/APl``, the
    recalls ``/AR1``, ``/AR10``, ``/AR100``, ``/ARs``, ``/ARm``, ``/ARl`` (COCOeval's 12 stats in
    its order) and, when ``class_names`` is given, ``/AP-<name>`` per class.

    Values are fractions in ``[0, 1]`` (Detectron2 reports them ×100); ``nan`` where COCOeval
    reports -1 (no ground truth in that category or area range).

    Args:
        iou_types: any of ``"bbox"`` and ``"segm"``.
        backend: ``"pycocotools"`` or ``"faster_coco_eval"`` (same numbers, the latter faster).
        class_names: names of the contiguous labels ``0..C-1``; enables per-class AP.

    Inputs to :meth:`update`, one dict per image:
        preds: ``boxes`` float ``[N, 4]`` XYXY pixels, ``scores`` float ``[N]``, ``labels``
            int64 ``[N]``, and for ``segm`` ``masks`` bool ``[N, H, W]``.
        targets: ``boxes`` float ``[M, 4]`` XYXY pixels, ``labels`` int64 ``[M]``, optional
            ``iscrowd`` int ``[M]`` (0/1) and ``area`` float ``[M]`` (COCO annotation area, px²;
            computed from the box or mask when absent or 0), and for ``segm`` ``masks`` uint8
            ``[M, H, W]``.

    Distributed: :meth:`compute` gathers every rank's images (ranks may hold different numbers)
    and every rank evaluates the full set.
    """

    def __init__(
        self,
        iou_types: Sequence[IouType] = ("bbox", "segm"),
        backend: Backend = "pycocotools",
        class_names: Sequence[str] | None = None,
    ) -> None:
        iou_types = tuple(iou_types)
        if not iou_types or any(t not in ("bbox", "segm") for t in iou_types):
            raise ValueError(
                f"iou_types must be a non-empty subset of ('bbox', 'segm'), got {iou_types}"
            )
        if backend not in ("pycocotools", "faster_coco_eval"):
            raise ValueError(
                f"backend must be 'pycocotools' or 'faster_coco_eval', got {backend!r}"
            )
        self.iou_types = iou_types
        self.class_names = list(class_names) if class_names is not None else None
        self.backend = backend
        # per image: (prediction, ground truth), numpy and RLE, as update() stores them
        self._images: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def update(self, preds: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> None:
        """Add a batch of images; see the class docstring for the dict contents."""
        if len(preds) != len(targets):
            raise ValueError(f"got {len(preds)} predictions for {len(targets)} targets")
        wants_masks = "segm" in self.iou_types
        for i, (pred, target) in enumerate(zip(preds, targets)):
            for name, item in (("prediction", pred), ("target", target)):
                if wants_masks and "masks" not in item:
                    raise ValueError(
                        f"iou_type 'segm' needs 'masks' in every {name}; image {i} has none"
                    )
        for pred, target in zip(preds, targets):
            self._images.append(
                (self._prediction(pred, wants_masks), self._target(target, wants_masks))
            )

    @staticmethod
    def _prediction(pred: dict[str, Tensor], with_masks: bool) -> dict[str, Any]:
        out = {k: to_numpy(pred[k]) for k in ("boxes", "scores", "labels")}
        if with_masks:
            out["rles"] = encode_masks(pred["masks"])
        return out

    @staticmethod
    def _target(target: dict[str, Tensor], with_masks: bool) -> dict[str, Any]:
        boxes = xyxy_to_xywh(target["boxes"])
        count = len(boxes)
        out: dict[str, Any] = {
            "boxes": boxes,
            "labels": to_numpy(target["labels"]).astype(np.int64),
            "iscrowd": to_numpy(target.get("iscrowd", np.zeros(count))).astype(np.int64),
            # COCO's annotated area; where absent or 0, the box's (bbox) or the mask's (segm)
            "area": to_numpy(target.get("area", np.zeros(count))).astype(np.float64),
        }
        if with_masks:
            out["rles"] = encode_masks(target["masks"])
            out["size"] = tuple(target["masks"].shape[-2:])  # (H, W), for COCOeval's annToRLE
        return out

    def compute(self) -> dict[str, float]:
        """AP over every image seen on every rank, keyed ``"<iou_type>/AP"`` etc. (see class docstring)."""
        images = all_gather_list(self._images)
        results: dict[str, float] = {}
        for iou_type in self.iou_types:
            ground_truth = _ground_truth_json(images, iou_type)
            detections = [
                record
                for image_id, (pred, _) in enumerate(images)
                for record in prediction_records(pred, image_id, fields=("segmentation",))
            ]
            coco_eval = run_cocoeval(ground_truth, detections, iou_type, self.backend)
            for key, value in zip(COCO_STAT_KEYS, coco_eval.stats):
                results[f"{iou_type}/{key}"] = _nan_if_negative(float(value))
            if self.class_names is not None:
                results.update(self._per_class_ap(coco_eval, iou_type))
        return results

    def _per_class_ap(self, coco_eval: Any, iou_type: str) -> dict[str, float]:
        """AP of each class over IoU 0.50:0.95, all areas, 100 detections (Detectron2's way)."""
        precision = coco_eval.eval["precision"]  # [T, R, K, A, M], K in params.catIds order
        index = {int(c): k for k, c in enumerate(coco_eval.params.catIds)}
        out = {}
        for label, name in enumerate(self.class_names or []):
            values = precision[:, :, index[label], 0, -1] if label in index else np.empty(0)
            values = values[values > -1]
            out[f"{iou_type}/AP-{name}"] = float(values.mean()) if values.size else math.nan
        return out

    def reset(self) -> None:
        """Forget all images."""
        self._images = []


def _ground_truth_json(images: list[tuple[dict, dict]], iou_type: str) -> dict:
    """COCO ground-truth dict of ``images`` (image ids are their positions); categories are every
    label seen in ground truth or predictions."""
    annotations = []
    labels: set[int] = set()
    for image_id, (pred, target) in enumerate(images):
        labels.update(pred["labels"].tolist())
        areas = target["area"].copy()
        if iou_type == "segm":
            computed = np.asarray([mask_util.area(rle) for rle in target["rles"]], np.float64)
        else:
            computed = target["boxes"][:, 2] * target["boxes"][:, 3]
        missing = areas <= 0
        areas[missing] = computed[missing]
        for j, (box, label, crowd, area) in enumerate(
            zip(
                target["boxes"].tolist(),
                target["labels"].tolist(),
                target["iscrowd"].tolist(),
                areas,
            )
        ):
            labels.add(label)
            annotation = {
                "id": len(annotations) + 1,  # COCOeval needs ids > 0
                "image_id": image_id,
                "category_id": label,
                "bbox": box,
                "area": float(area),
                "iscrowd": crowd,
            }
            if iou_type == "segm":
                annotation["segmentation"] = target["rles"][j]
            annotations.append(annotation)
    image_sizes = [target.get("size") for _, target in images]
    return {
        "images": [
            {"id": i, **({"height": size[0], "width": size[1]} if size else {})}
            for i, size in enumerate(image_sizes)
        ],
        "annotations": annotations,
        "categories": [{"id": label, "name": str(label)} for label in sorted(labels)],
    }


def _nan_if_negative(value: float) -> float:
    """COCOeval writes -1 where a metric is undefined; Detectron2 reports nan."""
    return value if value >= 0 else math.nan
