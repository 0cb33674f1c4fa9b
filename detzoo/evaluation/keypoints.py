"""COCO keypoint AP (OKS-based), through pycocotools' ``COCOeval(iouType="keypoints")``.

torchmetrics has no keypoint AP, so this builds the COCO ground-truth and result objects in
memory and hands them to pycocotools, as Detectron2's COCOEvaluator does with its json files.
"""

import math
from collections.abc import Sequence

import numpy as np
from torch import Tensor
from torchvision.ops import box_convert

from detzoo.evaluation.coco_format import run_cocoeval
from detzoo.evaluation.distributed import all_gather_list

# COCO's per-keypoint OKS sigmas for its 17 person keypoints (nose, eyes, ears, shoulders,
# elbows, wrists, hips, knees, ankles), from the COCO keypoint evaluation.
COCO_PERSON_OKS_SIGMAS: tuple[float, ...] = tuple(
    s / 10.0
    for s in (0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72)
    + (0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89)
)

# COCOeval.stats for keypoints, in its order: AP and AR over OKS 0.50:0.95 at 20 detections
KEYPOINT_STAT_KEYS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


class KeypointEvaluator:
    """Keypoint AP over OKS thresholds 0.50:0.95, as COCO and Detectron2 compute it.

    Returns ``keypoints/AP``, ``/AP50``, ``/AP75``, ``/APm``, ``/APl`` and the recalls ``/AR``,
    ``/AR50``, ``/AR75``, ``/ARm``, ``/ARl`` (COCOeval's 10 stats) as fractions in ``[0, 1]``
    (Detectron2 reports ×100); ``nan`` where COCOeval reports -1 and when there are no predictions.

    Args:
        oks_sigmas: per-keypoint OKS sigmas, length ``K``. ``None`` means COCO's 17 person
            sigmas (:data:`COCO_PERSON_OKS_SIGMAS`) and is only allowed when ``K == 17``.

    Inputs to :meth:`update`, one dict per image, predictions and targets in the same pixel
    frame (no +-0.5 shift is applied):
        preds: ``boxes`` float ``[N, 4]`` XYXY, ``scores`` float ``[N]``, ``labels`` int64
            ``[N]``, ``keypoints`` float ``[N, K, 3]`` (x, y, score).
        targets: ``boxes`` float ``[M, 4]`` XYXY, ``labels`` int64 ``[M]``, ``keypoints`` float
            ``[M, K, 3]`` (x, y, visibility 0/1/2), ``area`` float ``[M]`` (COCO annotation area,
            px²; the box area when absent), optional ``iscrowd`` int ``[M]``.

    As in Detectron2, each result carries its box, so pycocotools takes the detection's area
    (used for the area ranges of unmatched detections) from the box. Distributed:
    :meth:`compute` gathers every rank's images and every rank evaluates the full set.
    """

    def __init__(self, oks_sigmas: Sequence[float] | None = None) -> None:
        self.oks_sigmas = np.asarray(
            oks_sigmas if oks_sigmas is not None else COCO_PERSON_OKS_SIGMAS, np.float64
        )
        self._sigmas_given = oks_sigmas is not None
        if self.oks_sigmas.ndim != 1 or len(self.oks_sigmas) == 0 or (self.oks_sigmas <= 0).any():
            raise ValueError(
                f"oks_sigmas must be a non-empty sequence of positive floats, got {oks_sigmas}"
            )
        self._images: list[tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = []

    def update(self, preds: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> None:
        """Add a batch of images; see the class docstring for the dict contents."""
        if len(preds) != len(targets):
            raise ValueError(f"got {len(preds)} predictions for {len(targets)} targets")
        for pred, target in zip(preds, targets):
            pred_np = {k: pred[k].detach().cpu().numpy() for k in ("scores", "labels", "keypoints")}
            pred_np["boxes_xywh"] = box_convert(
                pred["boxes"].detach().cpu(), "xyxy", "xywh"
            ).numpy()
            target_np = {k: target[k].detach().cpu().numpy() for k in ("labels", "keypoints")}
            target_np["boxes_xywh"] = box_convert(
                target["boxes"].detach().cpu(), "xyxy", "xywh"
            ).numpy()
            target_np["iscrowd"] = (
                target["iscrowd"].detach().cpu().numpy()
                if "iscrowd" in target
                else np.zeros(len(target_np["labels"]), np.int64)
            )
            boxes = target_np["boxes_xywh"]
            target_np["area"] = (
                target["area"].detach().cpu().numpy()
                if "area" in target
                else boxes[:, 2] * boxes[:, 3]
            )
            for name, kpts in (
                ("prediction", pred_np["keypoints"]),
                ("target", target_np["keypoints"]),
            ):
                self._check_keypoints(name, kpts)
            self._images.append((pred_np, target_np))

    def _check_keypoints(self, name: str, keypoints: np.ndarray) -> None:
        if keypoints.ndim != 3 or keypoints.shape[2] != 3:
            raise ValueError(
                f"{name} keypoints must be [N, K, 3], got shape {tuple(keypoints.shape)}"
            )
        num_keypoints = keypoints.shape[1]
        if len(keypoints) and num_keypoints != len(self.oks_sigmas):
            if not self._sigmas_given:
                raise ValueError(
                    f"{name} has K={num_keypoints} keypoints: pass oks_sigmas (the default is COCO's 17)"
                )
            raise ValueError(
                f"{name} has K={num_keypoints} keypoints but {len(self.oks_sigmas)} oks_sigmas"
            )

    def compute(self) -> dict[str, float]:
        """Keypoint AP over every image seen on every rank (see class docstring for keys)."""
        images = all_gather_list(self._images)
        results = self._coco_results(images)
        if not results:  # Detectron2 reports nan when the model predicted nothing
            return {f"keypoints/{k}": math.nan for k in KEYPOINT_STAT_KEYS}
        coco_eval = run_cocoeval(
            self._coco_ground_truth(images), results, "keypoints", oks_sigmas=self.oks_sigmas
        )
        return {
            f"keypoints/{k}": float(v) if v >= 0 else math.nan
            for k, v in zip(KEYPOINT_STAT_KEYS, coco_eval.stats)
        }

    def reset(self) -> None:
        """Forget all images."""
        self._images = []

    @staticmethod
    def _coco_ground_truth(images: list[tuple[dict, dict]]) -> dict:
        annotations = []
        labels = set()
        for image_id, (_, target) in enumerate(images):
            for box, label, kpts, crowd, area in zip(
                target["boxes_xywh"].tolist(),
                target["labels"].tolist(),
                target["keypoints"],
                target["iscrowd"].tolist(),
                target["area"].tolist(),
            ):
                labels.add(label)
                annotations.append(
                    {
                        "id": len(annotations) + 1,  # COCOeval needs ids > 0
                        "image_id": image_id,
                        "category_id": label,
                        "bbox": box,
                        "area": area,
                        "iscrowd": crowd,
                        "keypoints": kpts.reshape(-1).tolist(),
                        "num_keypoints": int((kpts[:, 2] > 0).sum()),
                    }
                )
        for pred, _ in images:
            labels.update(pred["labels"].tolist())
        return {
            "images": [{"id": i} for i in range(len(images))],
            "annotations": annotations,
            "categories": [{"id": label, "name": str(label)} for label in sorted(labels)],
        }

    @staticmethod
    def _coco_results(images: list[tuple[dict, dict]]) -> list[dict]:
        return [
            {
                "image_id": image_id,
                "category_id": label,
                "bbox": box,
                "score": score,
                "keypoints": kpts.reshape(-1).tolist(),
            }
            for image_id, (pred, _) in enumerate(images)
            for box, score, label, kpts in zip(
                pred["boxes_xywh"].tolist(),
                pred["scores"].tolist(),
                pred["labels"].tolist(),
                pred["keypoints"],
            )
        ]
