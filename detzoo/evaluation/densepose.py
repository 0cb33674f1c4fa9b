"""DensePose AP over Geodesic Point Similarity (GPS) and masked GPS (GPSm), as Detectron2 computes it.

Detectron2's ``DensePoseCOCOEvaluator`` (``projects/DensePose/densepose/evaluation/evaluator.py``)
runs ``DensePoseCocoEval`` (``densepose_coco_evaluation.py``), a copy of pycocotools' COCOeval
whose similarity between a detection and a ground-truth person is, instead of a box IoU:

* **GPS** (``computeOgps``): the mean over the person's annotated points ``p`` of
  ``exp(-d(p̂, p)² / (2 κ(p)²))``, ``d`` the geodesic distance on the body surface between the
  annotated surface point ``p`` = (I, U, V) and the one the detection predicts at the same image
  pixel, ``p̂``. The pixel of a point is read in the detection's integer box as
  ``trunc(dp_x · w / 255 + x_gt - x_det)`` (the annotation frame is 256 px wide but Detectron2's
  evaluator divides by 255; detzoo's targets carry ``x = dp_x / 256 · w + x_gt``, so the offset
  is rescaled by 256/255 to read the same pixel). Points outside the box count as background;
  a point the prediction puts on background is at infinite distance (similarity 0); a detection
  with every point outside its box has GPS 0. ``κ`` is the surface's per-part normalisation
  (Detectron2's ``Mean_Distances``: the mean geodesic distance between points of the part), or
  a fixed value (the DensePose paper's 0.255 m).
* **GPSm** (``computeDPIoU`` and ``DensePoseEvalMode.GPSM``): ``sqrt(GPS · IoU)``, IoU between
  the predicted foreground (fine part index > 0 over the integer box) and the ground truth's
  ``dp_masks`` (their union, resized bilinearly to the annotated box, > 0.5), both pasted into
  the image.

The predicted (I, U, V) maps are Detectron2's default evaluation path:
``ToChartResultConverter`` (:func:`detzoo.structures.densepose.chart_to_box_iuv`) then
``quantize_densepose_chart_result`` (U, V stored as ``uint8(clamp(255 · U))`` and read back
as ``/ 255``).

Matching and AP (``evaluateImg``, ``accumulate``, ``Params.setUvParams``, ``_summarizeUvs``): per
image and category, at most 20 detections by score; thresholds 0.5:0.05:0.95; greedy matching in
score order as COCO's, where ground truth without DensePose annotations is ignored and a pair of
similarity 0 never matches. A detection left unmatched at 0.95 whose box IoU with a ground truth
(not matched at 0.95) is >= 0.8 takes that ground truth's ignore flag, so detections of
unannotated people are not false positives; when every ground truth of an image is ignored (or
it has none) its detections are ignored. Area ranges (ground-truth annotation area, detection box
area) all, medium ``[32², 96²]``, large ``[96², 1e10]``; precision at 101 recall points as COCO.
Not reproduced: PoseTrack's image ignore regions and the ``IOU`` mode (``densepose_segm``).

Surfaces: :class:`~detzoo.evaluation.surfaces.SMPLGeodesics` (DensePose-COCO: Detectron2's
precomputed SMPL geodesics) and :class:`~detzoo.data.synthetic.surface.ShapesFigureSurface` (the
synthetic ``shapes`` figure); any object with the
:class:`~detzoo.evaluation.surfaces.SurfaceDistance` methods works.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from torch import Tensor

from detzoo.evaluation.distributed import all_gather_list
from detzoo.evaluation.surfaces import SurfaceDistance
from detzoo.structures.densepose import NUM_FINE_PARTS, BoxIUV, chart_to_box_iuv

MAX_DETECTIONS = 20  # Detectron2's Params.setUvParams: maxDets = [20]
# np.linspace as Detectron2's Params (np.arange would overshoot)
SIMILARITY_THRESHOLDS = np.linspace(0.5, 0.95, 10)
_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
_AREA_RANGES = {"": (0.0, 1e10), "m": (32.0**2, 96.0**2), "l": (96.0**2, 1e10)}
_BOX_IOU_IGNORE = 0.8  # evaluateImg: unmatched detections on an ignored person
_MODES = ("GPS", "GPSm")
# The 256 x 256 DensePose annotation frame; Detectron2's evaluator maps it with / 255.
_EVAL_FRAME_SCALE = 256.0 / 255.0


# ---- the evaluator -------------------------------------------------------------------------


@dataclass
class _Group:
    """One image's detections (score order, at most :data:`MAX_DETECTIONS`) and ground truth of
    one category, with their similarities; all that AP needs, small enough to gather."""

    label: int
    scores: np.ndarray  # [D]
    dt_area: np.ndarray  # [D] box areas (px²)
    gt_area: np.ndarray  # [G] annotation areas (px²)
    gt_ignore: np.ndarray  # [G] bool: no DensePose annotation
    gt_crowd: np.ndarray  # [G] bool
    gps: np.ndarray  # [D, G] (0 for ignored ground truth)
    mask_iou: np.ndarray  # [D, G] (0 for ignored ground truth)
    box_iou: np.ndarray  # [D, G]


def _xywh(box: Tensor) -> list[float]:
    """XYXY float32 ``[4]`` -> ``[x, y, w, h]`` computed in float32, as Detectron2's BoxMode."""
    x0, y0, x1, y1 = box.float()
    return [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]


def _paste(mask: np.ndarray, box_xywh: Sequence[float], image_size: Sequence[int]) -> dict:
    """RLE of ``mask`` (``[h, w]``) placed at the box's truncated corner in an image of
    ``image_size`` (H, W), cut at the image and at ``trunc(x + w)``, ``trunc(y + h)``
    (Detectron2's ``_generate_rlemask_on_image``)."""
    x, y, w, h = box_xywh
    height, width = (int(s) for s in image_size)
    image = np.zeros((height, width), np.uint8)
    x_int, y_int = int(x), int(y)
    x0, y0 = max(x_int, 0), max(y_int, 0)
    x1 = min(int(x + w), width, x_int + mask.shape[1])
    y1 = min(int(y + h), height, y_int + mask.shape[0])
    if x1 > x0 and y1 > y0:
        image[y0:y1, x0:x1] = mask[y0 - y_int : y1 - y_int, x0 - x_int : x1 - x_int]
    return mask_utils.encode(np.asfortranarray(image))


def _gt_mask(segm: Tensor, box_xywh: Sequence[float]) -> np.ndarray:
    """uint8 ``[round(h), round(w)]``: the coarse parts' union resized to the box as Detectron2
    does with ``scipy.ndimage.zoom(order=1, prefilter=False)``, then > 0.5.

    That zoom samples output pixel ``o`` at input ``o * (n_in - 1) / (n_out - 1)`` (bilinear,
    corners aligned) and gives 0 for samples past the last input pixel, which rounding makes
    happen to the last row or column of some sizes; both are reproduced here."""
    _, _, w, h = box_xywh
    frame = segm.shape[-1]
    size = (int(round(frame * (max(h, 1.0) / frame))), int(round(frame * (max(w, 1.0) / frame))))
    foreground = (segm > 0).to(torch.float64)[None, None]
    resized = F.interpolate(foreground, size=size, mode="bilinear", align_corners=True)[0, 0]
    resized = resized.numpy()
    for axis, n_out in enumerate(size):
        step = (frame - 1) / (n_out - 1) if n_out > 1 else 1.0
        past_edge = np.arange(n_out) * step > frame - 1
        resized[(slice(None),) * axis + (past_edge,)] = 0.0
    return (resized > 0.5).astype(np.uint8)


def geodesic_point_similarity(
    iuv: BoxIUV,
    box_xywh: Sequence[float],
    gt: Mapping[str, Tensor],
    surface: SurfaceDistance,
    kappa: float | None = None,
) -> float:
    """GPS of one detection for one annotated person (see the module docstring).

    Args:
        iuv: the detection's result over its integer box (:func:`chart_to_box_iuv`).
        box_xywh: the detection's box ``[x, y, w, h]`` (image pixels, float).
        gt: the person's DensePose annotation (:mod:`detzoo.data.densepose`): ``x``, ``y``
            float ``[P]`` (image pixels), ``I`` int ``[P]``, ``U``, ``V`` float ``[P]``,
            ``segm_box`` float ``[4]`` XYXY.
        surface: the geodesic distance.
        kappa: a fixed ``κ`` (m) instead of the surface's per-part normalisation.

    Returns:
        GPS in ``[0, 1]``; 0 when the person has no point or every point is outside the box.
    """
    x_gt, y_gt = float(gt["segm_box"][0]), float(gt["segm_box"][1])
    x_dt, y_dt, w_dt, h_dt = box_xywh
    px = ((gt["x"].double().numpy() - x_gt) * _EVAL_FRAME_SCALE + x_gt - x_dt).astype(np.int64)
    py = ((gt["y"].double().numpy() - y_gt) * _EVAL_FRAME_SCALE + y_gt - y_dt).astype(np.int64)
    inside = (px >= 0) & (py >= 0) & (px < int(w_dt)) & (py < int(h_dt))
    if not inside.any():
        return 0.0
    px, py = np.where(inside, px, 0), np.where(inside, py, 0)
    pred_i = np.where(inside, iuv.labels.numpy()[py, px], 0).astype(np.int64)
    quantized = (iuv.uv * 255).clamp(0, 255).to(torch.uint8).numpy()  # Detectron2 stores uint8
    pred_u, pred_v = quantized[0, py, px] / 255.0, quantized[1, py, px] / 255.0

    gt_i = gt["I"].numpy().astype(np.int64)
    valid = (gt_i >= 1) & (gt_i <= NUM_FINE_PARTS)  # Detectron2 drops points of no part
    if not valid.any():
        return 0.0
    distance = surface.distances(
        gt_i[valid],
        gt["U"].double().numpy()[valid],
        gt["V"].double().numpy()[valid],
        pred_i[valid],
        pred_u[valid],
        pred_v[valid],
    )
    scale = (
        np.full(len(distance), kappa) if kappa is not None else surface.normalization(gt_i[valid])
    )
    return float(np.mean(np.exp(-(distance**2) / (2 * scale**2))))


class DensePoseEvaluator:
    """DensePose AP over GPS and GPSm (module docstring), as Detectron2's DensePose evaluator.

    Returns ``densepose/AP_GPS``, ``/AP50_GPS``, ``/AP75_GPS``, ``/APm_GPS``, ``/APl_GPS`` and the
    same with ``_GPSm``, fractions in ``[0, 1]`` (Detectron2 reports ×100); ``nan`` where
    Detectron2 reports -1 (no annotated person in the range) and when nothing was predicted.

    Args:
        surface: the body surface's geodesic distance
            (:class:`~detzoo.evaluation.surfaces.SMPLGeodesics` for DensePose-COCO,
            :class:`~detzoo.data.synthetic.surface.ShapesFigureSurface` for ``shapes``, or any
            :class:`~detzoo.evaluation.surfaces.SurfaceDistance`).
        kappa: a fixed GPS normalisation ``κ`` (m) for every point, e.g. 0.255 as in the
            DensePose paper; ``None`` (Detectron2 and the COCO challenge since 2019): the
            surface's per-part normalisation.

    Inputs to :meth:`update`, one dict per image, predictions and targets in the original image
    frame:
        preds: ``boxes`` float ``[N, 4]`` XYXY, ``scores`` ``[N]``, ``labels`` int64 ``[N]``,
            ``densepose`` ``{"coarse_segm": [N, K, S, S], "fine_segm", "u", "v": [N, C, S, S]}``
            (the model's chart outputs over each box).
        targets: ``boxes`` float ``[M, 4]`` XYXY, ``labels`` int64 ``[M]``, ``densepose`` list of
            ``M`` (``None`` or a dict as :mod:`detzoo.data.densepose`: ``x``, ``y``, ``I``, ``U``,
            ``V``, ``segm``, ``segm_box``), ``orig_size`` ``(H, W)``, optional ``area`` ``[M]``
            (px², the box area when absent) and ``iscrowd`` ``[M]``.

    Each image's similarities are computed in :meth:`update` and only they are kept, so memory
    does not grow with the charts. Distributed: :meth:`compute` gathers every rank's images and
    every rank evaluates the full set.
    """

    def __init__(self, surface: SurfaceDistance, kappa: float | None = None) -> None:
        if kappa is not None and not kappa > 0:
            raise ValueError(f"kappa must be a positive distance in metres, got {kappa}")
        self.surface = surface
        self.kappa = kappa
        self._groups: list[_Group] = []

    def update(self, preds: list[dict], targets: list[dict]) -> None:
        """Add a batch of images; see the class docstring for the dict contents."""
        if len(preds) != len(targets):
            raise ValueError(f"got {len(preds)} predictions for {len(targets)} targets")
        for pred, target in zip(preds, targets):
            if "densepose" not in pred:
                raise ValueError("DensePoseEvaluator needs predictions with 'densepose' charts")
            if "densepose" not in target or "orig_size" not in target:
                raise ValueError(
                    "DensePoseEvaluator needs targets with 'densepose' (a DensePose dataset, "
                    "e.g. detzoo.data.CocoDensePose) and 'orig_size'"
                )
            self._groups.extend(self._image_groups(pred, target))

    def _image_groups(self, pred: dict, target: dict) -> list[_Group]:
        scores = pred["scores"].detach().cpu().float()
        pred_labels = pred["labels"].detach().cpu()
        pred_boxes = pred["boxes"].detach().cpu().float()
        charts = {k: v.detach().cpu() for k, v in pred["densepose"].items()}
        gt_labels = target["labels"].detach().cpu()
        gt_boxes = target["boxes"].detach().cpu().float()
        gt_area = (
            target["area"].detach().cpu().double().numpy()
            if "area" in target
            else ((gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])).numpy()
        )
        gt_crowd = (
            target["iscrowd"].detach().cpu().numpy().astype(bool)
            if "iscrowd" in target
            else np.zeros(len(gt_labels), bool)
        )
        densepose = [
            None if d is None else {k: torch.as_tensor(v).detach().cpu() for k, v in d.items()}
            for d in target["densepose"]
        ]
        image_size = tuple(int(s) for s in target["orig_size"])

        groups = []
        for label in sorted(set(pred_labels.tolist()) | set(gt_labels.tolist())):
            dets = torch.nonzero(pred_labels == label).flatten()
            order = np.argsort(-scores[dets].numpy(), kind="mergesort")[:MAX_DETECTIONS]
            dets = dets[torch.from_numpy(order)].tolist()
            gts = torch.nonzero(gt_labels == label).flatten().tolist()
            dt_xywh = [_xywh(pred_boxes[d]) for d in dets]
            gt_xywh = [_xywh(gt_boxes[g]) for g in gts]
            ignore = np.array([densepose[g] is None for g in gts], bool)
            crowd = gt_crowd[gts]
            gps = np.zeros((len(dets), len(gts)))
            mask_iou = np.zeros((len(dets), len(gts)))
            box_iou = np.zeros((len(dets), len(gts)))
            if dets and gts:
                box_iou = np.asarray(mask_utils.iou(dt_xywh, gt_xywh, crowd.tolist()))
            annotated = [j for j, g in enumerate(gts) if densepose[g] is not None]
            if dets and annotated:
                iuvs = [
                    chart_to_box_iuv(
                        charts["coarse_segm"][d],
                        charts["fine_segm"][d],
                        charts["u"][d],
                        charts["v"][d],
                        pred_boxes[d],
                    )
                    for d in dets
                ]
                dt_masks = [
                    _paste((iuv.labels > 0).numpy().astype(np.uint8), xywh, image_size)
                    for iuv, xywh in zip(iuvs, dt_xywh)
                ]
                gt_masks = []
                for j in annotated:
                    person = densepose[gts[j]]
                    person_xywh = _xywh(person["segm_box"])
                    gt_masks.append(
                        _paste(_gt_mask(person["segm"], person_xywh), person_xywh, image_size)
                    )
                    for i, (iuv, xywh) in enumerate(zip(iuvs, dt_xywh)):
                        gps[i, j] = geodesic_point_similarity(
                            iuv, xywh, person, self.surface, self.kappa
                        )
                ious = np.asarray(mask_utils.iou(dt_masks, gt_masks, crowd[annotated].tolist()))
                mask_iou[:, annotated] = ious.reshape(len(dets), len(annotated))
            groups.append(
                _Group(
                    label=label,
                    scores=scores[dets].double().numpy(),
                    dt_area=np.array([w * h for _, _, w, h in dt_xywh], np.float64),
                    gt_area=gt_area[gts],
                    gt_ignore=ignore,
                    gt_crowd=crowd,
                    gps=gps,
                    mask_iou=mask_iou,
                    box_iou=np.asarray(box_iou, np.float64).reshape(len(dets), len(gts)),
                )
            )
        return groups

    def compute(self) -> dict[str, float]:
        """DensePose AP over every image seen on every rank (see the class docstring for keys)."""
        groups = all_gather_list(self._groups)
        results: dict[str, float] = {}
        no_predictions = not any(len(g.scores) for g in groups)
        for mode in _MODES:
            for area, area_range in _AREA_RANGES.items():
                precision = _precision(groups, mode, area_range)  # [T, R, labels], -1 = none
                for stat, thresholds in (("AP", slice(None)), ("AP50", [0]), ("AP75", [5])):
                    if area and stat != "AP":
                        continue
                    values = precision[thresholds]
                    values = values[values > -1]
                    key = f"densepose/{stat}{area}_{mode}"
                    results[key] = (
                        math.nan if no_predictions or not values.size else float(values.mean())
                    )
        return results

    def reset(self) -> None:
        """Forget all images."""
        self._groups = []


def _match(
    similarity: np.ndarray,
    box_iou: np.ndarray,
    gt_ignore: np.ndarray,
    gt_crowd: np.ndarray,
    dt_outside: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Detectron2's ``DensePoseCocoEval.evaluateImg`` for one image and category: bool
    ``[T, D]`` matched and ignored flags of the detections (score order) at each threshold.
    ``gt_ignore`` includes the area range; ``dt_outside`` ``[D]``: detection area outside it."""
    order = np.argsort(gt_ignore, kind="mergesort")  # ignored ground truth last
    similarity, box_iou = similarity[:, order], box_iou[:, order]
    gt_ignore, gt_crowd = gt_ignore[order], gt_crowd[order]
    num_dt, num_gt = similarity.shape
    num_thresholds = len(SIMILARITY_THRESHOLDS)
    gt_matched = np.zeros((num_thresholds, num_gt), bool)
    dt_matched = np.zeros((num_thresholds, num_dt), bool)
    dt_ignore = np.full((num_thresholds, num_dt), bool(gt_ignore.all()))
    if num_dt and num_gt:
        for t, threshold in enumerate(SIMILARITY_THRESHOLDS):
            for d in range(num_dt):
                best, match = min(threshold, 1 - 1e-10), -1
                for g in range(num_gt):
                    if gt_matched[t, g] and not gt_crowd[g]:
                        continue
                    if match > -1 and not gt_ignore[match] and gt_ignore[g]:
                        break
                    if similarity[d, g] < best or similarity[d, g] == 0:
                        continue
                    best, match = similarity[d, g], g
                if match > -1:
                    dt_ignore[t, d] = gt_ignore[match]
                    dt_matched[t, d] = gt_matched[t, match] = True
        last = num_thresholds - 1  # Detectron2 runs this at its loop's last threshold only
        for d in range(num_dt):
            if dt_matched[last, d]:
                continue
            best, match = _BOX_IOU_IGNORE, -1
            for g in range(num_gt):
                if gt_matched[last, g] and not gt_crowd[g]:
                    continue
                if box_iou[d, g] < best:
                    continue
                best, match = box_iou[d, g], g
            if match > -1:
                dt_ignore[:, d] = gt_ignore[match]
                if gt_ignore[match]:
                    dt_matched[last, d] = gt_matched[last, match] = True
    dt_ignore |= ~dt_matched & dt_outside[None]
    return dt_matched, dt_ignore


def _precision(groups: list[_Group], mode: str, area_range: tuple[float, float]) -> np.ndarray:
    """COCO's ``accumulate``: precision ``[T, R, L]`` at each threshold, recall point and label
    (-1 where a label has no non-ignored ground truth)."""
    low, high = area_range
    labels = sorted({g.label for g in groups})
    precision = -np.ones((len(SIMILARITY_THRESHOLDS), len(_RECALL_THRESHOLDS), len(labels)))
    for k, label in enumerate(labels):
        scores, matched, ignored, num_positive = [], [], [], 0
        for group in groups:
            if group.label != label:
                continue
            similarity = group.gps if mode == "GPS" else np.sqrt(group.gps * group.mask_iou)
            gt_ignore = group.gt_ignore | (group.gt_area < low) | (group.gt_area > high)
            dt_outside = (group.dt_area < low) | (group.dt_area > high)
            dt_matched, dt_ignore = _match(
                similarity, group.box_iou, gt_ignore, group.gt_crowd, dt_outside
            )
            scores.append(group.scores)
            matched.append(dt_matched)
            ignored.append(dt_ignore)
            num_positive += int((~gt_ignore).sum())
        if num_positive == 0:
            continue
        order = np.argsort(-np.concatenate(scores), kind="mergesort")
        matched_all = np.concatenate(matched, axis=1)[:, order]
        ignored_all = np.concatenate(ignored, axis=1)[:, order]
        tp = np.cumsum(matched_all & ~ignored_all, axis=1).astype(np.float64)
        fp = np.cumsum(~matched_all & ~ignored_all, axis=1).astype(np.float64)
        for t in range(len(SIMILARITY_THRESHOLDS)):
            recall = tp[t] / num_positive
            prec = tp[t] / (fp[t] + tp[t] + np.spacing(1))
            prec = np.maximum.accumulate(prec[::-1])[::-1]  # precision envelope
            at = np.searchsorted(recall, _RECALL_THRESHOLDS, side="left")
            # recall points beyond the highest recall reached keep precision 0
            padded = np.append(prec, 0.0)
            precision[t, :, k] = padded[np.minimum(at, len(prec))]
    return precision
