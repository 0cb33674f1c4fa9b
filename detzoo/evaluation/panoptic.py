"""Panoptic quality (PQ, SQ, RQ) computed exactly as panopticapi's ``pq_compute``.

panopticapi reads PNG files and json from disk and is not on PyPI, so its per-image matching is
written here on tensors; the counting rules follow ``pq_compute_single_core`` line by line.
"""

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

VOID = 0  # segment id of unlabelled (ground truth) / unassigned (prediction) pixels


def _segment_areas(panoptic: Tensor) -> dict[int, int]:
    ids, counts = torch.unique(panoptic, return_counts=True)
    return dict(zip(ids.tolist(), counts.tolist()))


def _pair_intersections(pan_gt: Tensor, pan_pred: Tensor) -> dict[tuple[int, int], int]:
    offset = int(pan_pred.max()) + 1
    pairs, counts = torch.unique(pan_gt.long() * offset + pan_pred.long(), return_counts=True)
    return {(p // offset, p % offset): c for p, c in zip(pairs.tolist(), counts.tolist())}


class PanopticEvaluator(Metric):
    """PQ/SQ/RQ over all, thing and stuff categories, as panopticapi (and Detectron2) compute them.

    A predicted and a ground-truth segment of the same category match when their IoU > 0.5, the
    IoU's union leaving out the predicted segment's void pixels. Unmatched ground truth is a false
    negative unless it is a crowd region; an unmatched prediction is a false positive unless more
    than half of it lies on void or on a crowd region of its category. A category with no true
    positive, false positive or false negative is left out of the averages.

    ``compute()`` returns fractions in ``[0, 1]`` (Detectron2 reports ×100):
    ``panoptic_seg/PQ``, ``/SQ``, ``/RQ`` (all categories), ``/PQ_th``, ``/SQ_th``, ``/RQ_th``
    (things), ``/PQ_st``, ``/SQ_st``, ``/RQ_st`` (stuff), and per category ``/PQ-<name>``,
    ``/SQ-<name>``, ``/RQ-<name>``; ``nan`` where no category counts.

    Args:
        things: contiguous category ids of the thing categories.
        stuff: contiguous category ids of the stuff categories.
        class_names: names indexed by category id, for the per-category keys (default: the id).

    Inputs to :meth:`update`, one dict per image, both in the same form:
        ``panoptic_seg`` int ``[H, W]``: segment id per pixel, 0 = void (unlabelled / unassigned);
        ``segments_info``: list of ``{"id": int, "category_id": int}`` for every non-zero id in
        the image, plus ``"iscrowd": 0/1`` in targets (default 0); other keys are ignored.

    Distributed: per-category counts are summed over ranks (torchmetrics ``dist_reduce_fx="sum"``).
    """

    full_state_update = False
    tp: Tensor
    fp: Tensor
    fn: Tensor
    iou: Tensor

    def __init__(
        self, things: Sequence[int], stuff: Sequence[int], class_names: Sequence[str] | None = None
    ) -> None:
        super().__init__()
        self.things, self.stuff = sorted(set(things)), sorted(set(stuff))
        if set(self.things) & set(self.stuff):
            raise ValueError(
                f"categories {sorted(set(self.things) & set(self.stuff))} are both thing and stuff"
            )
        categories = self.things + self.stuff
        if not categories or min(categories) < 0:
            raise ValueError(
                "things and stuff must hold non-negative category ids, and not both be empty"
            )
        num_categories = max(categories) + 1
        if class_names is not None and len(class_names) < num_categories:
            raise ValueError(
                f"class_names has {len(class_names)} names for category ids up to {num_categories - 1}"
            )
        self.class_names = (
            list(class_names)
            if class_names is not None
            else [str(i) for i in range(num_categories)]
        )
        self.add_state("tp", torch.zeros(num_categories, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("fp", torch.zeros(num_categories, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("fn", torch.zeros(num_categories, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state(
            "iou", torch.zeros(num_categories, dtype=torch.float64), dist_reduce_fx="sum"
        )

    def update(self, preds: list[dict[str, Any]], targets: list[dict[str, Any]]) -> None:
        """Add a batch of images; see the class docstring for the dict contents."""
        if len(preds) != len(targets):
            raise ValueError(f"got {len(preds)} predictions for {len(targets)} targets")
        for i, (pred, target) in enumerate(zip(preds, targets)):
            pan_pred = pred["panoptic_seg"].detach().cpu()
            pan_gt = target["panoptic_seg"].detach().cpu()
            if pan_pred.shape != pan_gt.shape or pan_pred.dim() != 2:
                raise ValueError(
                    f"image {i}: panoptic_seg shapes {tuple(pan_pred.shape)} and {tuple(pan_gt.shape)} must be equal [H, W]"
                )
            self._update_image(i, pan_gt, target["segments_info"], pan_pred, pred["segments_info"])

    def _update_image(
        self, i: int, pan_gt: Tensor, gt_info: list[dict], pan_pred: Tensor, pred_info: list[dict]
    ) -> None:
        known = set(self.things) | set(self.stuff)
        gt_segments = {s["id"]: s for s in gt_info}
        pred_segments = {s["id"]: s for s in pred_info}
        for name, segments in (("target", gt_segments), ("prediction", pred_segments)):
            unknown = {s["category_id"] for s in segments.values()} - known
            if unknown:
                raise ValueError(
                    f"image {i}: {name} segments have unknown category ids {sorted(unknown)}"
                )
        pred_areas = _segment_areas(pan_pred)
        gt_areas = _segment_areas(pan_gt)
        if set(pred_areas) - {VOID} != set(pred_segments):
            raise ValueError(
                f"image {i}: predicted segment ids in panoptic_seg {sorted(set(pred_areas) - {VOID})} "
                f"and in segments_info {sorted(pred_segments)} differ"
            )
        intersections = _pair_intersections(pan_gt, pan_pred)

        gt_matched, pred_matched = set(), set()
        for (gt_id, pred_id), intersection in intersections.items():
            if gt_id not in gt_segments or pred_id not in pred_segments:
                continue
            gt_segment = gt_segments[gt_id]
            if (
                gt_segment.get("iscrowd", 0) == 1
                or gt_segment["category_id"] != pred_segments[pred_id]["category_id"]
            ):
                continue
            union = (
                pred_areas[pred_id]
                + gt_areas[gt_id]
                - intersection
                - intersections.get((VOID, pred_id), 0)
            )
            iou = intersection / union
            if iou > 0.5:
                category = gt_segment["category_id"]
                self.tp[category] += 1
                self.iou[category] += iou
                gt_matched.add(gt_id)
                pred_matched.add(pred_id)

        crowd_by_category = {}
        for gt_id, segment in gt_segments.items():
            if gt_id in gt_matched:
                continue
            if segment.get("iscrowd", 0) == 1:
                crowd_by_category[segment["category_id"]] = (
                    gt_id  # panopticapi keeps one per category
                )
                continue
            self.fn[segment["category_id"]] += 1

        for pred_id, segment in pred_segments.items():
            if pred_id in pred_matched:
                continue
            ignored = intersections.get((VOID, pred_id), 0)
            if segment["category_id"] in crowd_by_category:
                ignored += intersections.get(
                    (crowd_by_category[segment["category_id"]], pred_id), 0
                )
            if ignored / pred_areas[pred_id] > 0.5:
                continue
            self.fp[segment["category_id"]] += 1

    def compute(self) -> dict[str, float]:
        """PQ/SQ/RQ over every image seen on every rank (see class docstring for keys)."""
        tp, fp, fn, iou = self.tp.double(), self.fp.double(), self.fn.double(), self.iou
        counted = (tp + fp + fn) > 0
        denominator = (tp + 0.5 * fp + 0.5 * fn).clamp(min=1e-12)
        nan = torch.full_like(iou, math.nan)
        pq = torch.where(counted, iou / denominator, nan)
        sq = torch.where(counted, torch.where(tp > 0, iou / tp.clamp(min=1), 0.0), nan)
        rq = torch.where(counted, tp / denominator, nan)

        results = {}
        for suffix, ids in (
            ("", self.things + self.stuff),
            ("_th", self.things),
            ("_st", self.stuff),
        ):
            chosen = torch.zeros_like(counted)
            chosen[ids] = True
            chosen &= counted
            for name, values in (("PQ", pq), ("SQ", sq), ("RQ", rq)):
                results[f"panoptic_seg/{name}{suffix}"] = (
                    values[chosen].mean().item() if chosen.any() else math.nan
                )
        for category in self.things + self.stuff:
            for name, values in (("PQ", pq), ("SQ", sq), ("RQ", rq)):
                results[f"panoptic_seg/{name}-{self.class_names[category]}"] = values[
                    category
                ].item()
        return results
