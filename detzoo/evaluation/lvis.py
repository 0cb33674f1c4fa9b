"""LVIS federated AP (AP, APr, APc, APf) on top of pycocotools' ``COCOeval``.

The ``lvis`` package on PyPI (0.5.3, its last release) calls ``np.float``, which numpy 2 removed,
so LVIS's federated rules are applied here around pycocotools, which does the matching and the
precision/recall accumulation exactly as LVIS's own (LVIS's evaluator was derived from it):

* detections are capped at ``max_dets_per_image`` per image over all categories (LVIS: 300);
* a detection of a category neither present in the image nor in its ``neg_category_ids`` is
  dropped (the image says nothing about that category);
* an unmatched detection of a category in the image's ``not_exhaustive_category_ids`` is ignored.

Categories are contiguous labels throughout, as in the predictions: targets give the image's
LVIS ``neg_category_ids`` and ``not_exhaustive_category_ids`` as the labels ``neg_labels`` and
``not_exhaustive_labels`` (what :class:`detzoo.data.LvisDetection` gives).
"""

import contextlib
import io
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pycocotools.mask as mask_util
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor

from detzoo.evaluation.coco_format import encode_masks, to_numpy, xyxy_to_xywh
from detzoo.evaluation.distributed import all_gather_list

FREQUENCIES = ("r", "c", "f")  # rare (1-10 training images), common (11-100), frequent (>100)
_AREAS = {"APs": 1, "APm": 2, "APl": 3}  # COCOeval area-range indices (0 is "all")
# the LVIS json's per-image keys, in category ids; targets carry them as labels instead
_CATEGORY_ID_KEYS = ("neg_category_ids", "not_exhaustive_category_ids")


class LVISEvaluator:
    """LVIS box/mask AP with federated annotation rules, as the ``lvis`` package computes it.

    Returns ``"<iou_type>/AP"``, ``/AP50``, ``/AP75``, ``/APs``, ``/APm``, ``/APl``, ``/APr``,
    ``/APc``, ``/APf`` and, with ``class_names``, ``/AP-<name>``, as fractions in ``[0, 1]``
    (Detectron2 reports ×100); ``nan`` where no category has ground truth.

    Args:
        frequencies: for each contiguous label ``0..C-1``, its LVIS frequency group: ``"r"``,
            ``"c"`` or ``"f"``.
        iou_types: any of ``"bbox"`` and ``"segm"``.
        class_names: names of the labels, for per-class AP.
        max_dets_per_image: detections kept per image, highest scores first (LVIS: 300).

    Inputs to :meth:`update`, one dict per image:
        preds: ``boxes`` float ``[N, 4]`` XYXY pixels, ``scores`` float ``[N]``, ``labels``
            int64 ``[N]``, and for ``segm`` ``masks`` bool ``[N, H, W]``.
        targets: ``boxes`` float ``[M, 4]`` XYXY pixels, ``labels`` int64 ``[M]``, optional
            ``area`` float ``[M]`` (px²; from the box or mask when absent), for ``segm``
            ``masks`` uint8 ``[M, H, W]``, and ``neg_labels`` and ``not_exhaustive_labels``
            int64 ``[K]``: the contiguous labels (the predictions' id space, not LVIS category
            ids) of the image's ``neg_category_ids`` (verified absent) and
            ``not_exhaustive_category_ids`` (not all instances annotated); empty when absent,
            which drops every detection of a label the image does not have. These are
            :class:`detzoo.data.LvisDetection`'s target fields.

    Distributed: :meth:`compute` gathers every rank's images and every rank evaluates them all.
    """

    def __init__(
        self,
        frequencies: Sequence[Literal["r", "c", "f"]],
        iou_types: Sequence[Literal["bbox", "segm"]] = ("bbox",),
        class_names: Sequence[str] | None = None,
        max_dets_per_image: int = 300,
    ) -> None:
        self.frequencies = list(frequencies)
        if not self.frequencies or set(self.frequencies) - set(FREQUENCIES):
            raise ValueError(
                f"frequencies must be a non-empty sequence of 'r', 'c', 'f', got {frequencies}"
            )
        self.iou_types = tuple(iou_types)
        if not self.iou_types or set(self.iou_types) - {"bbox", "segm"}:
            raise ValueError(
                f"iou_types must be a non-empty subset of ('bbox', 'segm'), got {iou_types}"
            )
        if class_names is not None and len(class_names) != len(self.frequencies):
            raise ValueError(
                f"got {len(class_names)} class_names for {len(self.frequencies)} frequencies"
            )
        if max_dets_per_image < 1:
            raise ValueError(f"max_dets_per_image must be >= 1, got {max_dets_per_image}")
        self.class_names = list(class_names) if class_names is not None else None
        self.max_dets_per_image = max_dets_per_image
        self._images: list[dict[str, Any]] = []

    def update(self, preds: list[dict[str, Tensor]], targets: list[dict[str, Any]]) -> None:
        """Add a batch of images; see the class docstring for the dict contents."""
        if len(preds) != len(targets):
            raise ValueError(f"got {len(preds)} predictions for {len(targets)} targets")
        num_classes = len(self.frequencies)
        for i, (pred, target) in enumerate(zip(preds, targets)):
            stale = sorted(k for k in _CATEGORY_ID_KEYS if k in target)
            if stale:  # LVIS category ids would be compared with labels: wrong numbers, silently
                raise ValueError(
                    f"image {i}: target has {stale}; LVISEvaluator reads the contiguous labels "
                    "'neg_labels' and 'not_exhaustive_labels' (see detzoo.data.LvisDetection)"
                )
            # keep the top-scoring detections over all categories, as LVISResults does
            order = np.argsort(-to_numpy(pred["scores"]), kind="stable")[: self.max_dets_per_image]
            image = {
                "pred_boxes_xywh": xyxy_to_xywh(pred["boxes"])[order],
                "pred_scores": to_numpy(pred["scores"])[order],
                "pred_labels": to_numpy(pred["labels"])[order],
                "gt_boxes_xywh": xyxy_to_xywh(target["boxes"]),
                "gt_labels": to_numpy(target["labels"]),
                "gt_area": to_numpy(target["area"]) if "area" in target else None,
                "neg": set(to_numpy(target.get("neg_labels", [])).tolist()),
                "not_exhaustive": set(to_numpy(target.get("not_exhaustive_labels", [])).tolist()),
            }
            labels = np.concatenate(
                [
                    image["pred_labels"],
                    image["gt_labels"],
                    list(image["neg"]),
                    list(image["not_exhaustive"]),
                ]
            ).astype(np.int64)
            if ((labels < 0) | (labels >= num_classes)).any():
                raise ValueError(f"image {i}: labels must be in [0, {num_classes})")
            if "segm" in self.iou_types:
                if "masks" not in pred or "masks" not in target:
                    raise ValueError(
                        f"iou_type 'segm' needs 'masks' in predictions and targets; image {i} lacks them"
                    )
                pred_masks = encode_masks(pred["masks"])
                image["pred_masks"] = [pred_masks[j] for j in order]
                image["gt_masks"] = encode_masks(target["masks"])
                image["height"], image["width"] = target["masks"].shape[-2:]
            self._images.append(image)

    def compute(self) -> dict[str, float]:
        """Federated AP over every image seen on every rank (see class docstring for keys)."""
        images = all_gather_list(self._images)
        results: dict[str, float] = {}
        for iou_type in self.iou_types:
            precision = self._precision(images, iou_type)
            results.update(self._summarize(iou_type, precision))
        return results

    def reset(self) -> None:
        """Forget all images."""
        self._images = []

    def _precision(self, images: list[dict[str, Any]], iou_type: str) -> np.ndarray | None:
        """COCOeval's ``precision`` [T, R, K, A, 1] under LVIS's rules; None without detections."""
        detections = self._detections(images, iou_type)
        if not detections:
            return None
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
            coco_gt = COCO()
            coco_gt.dataset = self._ground_truth(images, iou_type)
            coco_gt.createIndex()
            coco_eval = COCOeval(coco_gt, coco_gt.loadRes(detections), iouType=iou_type)
            coco_eval.params.maxDets = [self.max_dets_per_image]
            coco_eval.evaluate()
            for entry in coco_eval.evalImgs:
                if (
                    entry is not None
                    and entry["category_id"] in images[entry["image_id"]]["not_exhaustive"]
                ):
                    entry["dtIgnore"] = entry["dtIgnore"] | (entry["dtMatches"] == 0)
            coco_eval.accumulate()
        return coco_eval.eval["precision"]

    def _ground_truth(self, images: list[dict[str, Any]], iou_type: str) -> dict:
        annotations = []
        for image_id, image in enumerate(images):
            for k, (box, label) in enumerate(
                zip(image["gt_boxes_xywh"].tolist(), image["gt_labels"].tolist())
            ):
                annotation = {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": label,
                    "iscrowd": 0,
                }
                annotation["bbox"] = box
                if iou_type == "segm":
                    annotation["segmentation"] = image["gt_masks"][k]
                if image["gt_area"] is not None:
                    annotation["area"] = float(image["gt_area"][k])
                elif iou_type == "segm":
                    annotation["area"] = float(mask_util.area(image["gt_masks"][k]))
                else:
                    annotation["area"] = box[2] * box[3]
                annotations.append(annotation)
        return {
            # pycocotools reads the image size of every mask annotation
            "images": [
                {"id": i, "height": im.get("height"), "width": im.get("width")}
                for i, im in enumerate(images)
            ],
            "annotations": annotations,
            "categories": [{"id": label} for label in range(len(self.frequencies))],
        }

    @staticmethod
    def _detections(images: list[dict[str, Any]], iou_type: str) -> list[dict]:
        detections = []
        for image_id, image in enumerate(images):
            evaluable = set(image["gt_labels"].tolist()) | image["neg"]
            for k, (box, score, label) in enumerate(
                zip(
                    image["pred_boxes_xywh"].tolist(),
                    image["pred_scores"].tolist(),
                    image["pred_labels"].tolist(),
                )
            ):
                if label not in evaluable:
                    continue
                detection = {"image_id": image_id, "category_id": label, "score": score}
                if iou_type == "segm":
                    detection["segmentation"] = image["pred_masks"][k]
                else:
                    detection["bbox"] = box
                detections.append(detection)
        return detections

    def _summarize(self, iou_type: str, precision: np.ndarray | None) -> dict[str, float]:
        def mean_ap(p: np.ndarray) -> float:
            valid = p[p > -1]
            return float(valid.mean()) if valid.size else math.nan

        keys = ["AP", "AP50", "AP75", *_AREAS, *(f"AP{f}" for f in FREQUENCIES)]
        names = self.class_names or []
        if precision is None:  # no detection at all
            return {f"{iou_type}/{k}": math.nan for k in keys + [f"AP-{n}" for n in names]}
        p = precision[..., 0]  # [T, R, K, A]
        results = {
            f"{iou_type}/AP": mean_ap(p[:, :, :, 0]),
            f"{iou_type}/AP50": mean_ap(p[0, :, :, 0]),  # IoU thresholds 0.50:0.95, 0.50 first
            f"{iou_type}/AP75": mean_ap(p[5, :, :, 0]),
        }
        results.update({f"{iou_type}/{k}": mean_ap(p[:, :, :, a]) for k, a in _AREAS.items()})
        frequencies = np.array(self.frequencies)
        for f in FREQUENCIES:
            results[f"{iou_type}/AP{f}"] = mean_ap(p[:, :, frequencies == f, 0])
        for label, name in enumerate(names):
            results[f"{iou_type}/AP-{name}"] = mean_ap(p[:, :, label, 0])
        return results
