"""COCO box and mask AP, through torchmetrics' ``MeanAveragePrecision`` (pycocotools or faster-coco-eval)."""

import math
import warnings
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor
from torchmetrics.detection import MeanAveragePrecision

from detzoo.evaluation.distributed import all_gather_list

IouType = Literal["bbox", "segm"]
Backend = Literal["pycocotools", "faster_coco_eval"]

# torchmetrics summary key -> Detectron2 key suffix
_SUMMARY_KEYS = {
    "map": "AP",
    "map_50": "AP50",
    "map_75": "AP75",
    "map_small": "APs",
    "map_medium": "APm",
    "map_large": "APl",
}


def _to_torchmetrics(
    item: dict[str, Any], keys: Sequence[str], with_masks: bool
) -> dict[str, Tensor]:
    out = {k: item[k].detach().cpu() for k in keys if k in item}
    if with_masks:
        out["masks"] = item["masks"].detach().cpu().to(torch.uint8)  # pycocotools encodes uint8
    return out


class CocoEvaluator:
    """COCO-style detection (``bbox``) and instance segmentation (``segm``) AP.

    Wraps ``torchmetrics.detection.MeanAveragePrecision`` with ``iscrowd`` and the annotation
    ``area`` passed through, so results equal pycocotools' ``COCOeval`` run on the original
    annotation json. Returns Detectron2's key names, ``"<iou_type>/AP"``, ``/AP50``, ``/AP75``,
    ``/APs``, ``/APm``, ``/APl`` and, when ``class_names`` is given, ``/AP-<name>`` per class.

    Values are fractions in ``[0, 1]`` (Detectron2 reports them ×100); ``nan`` where COCOeval
    reports -1 (no ground truth in that category or area range).

    Args:
        iou_types: any of ``"bbox"`` and ``"segm"``.
        backend: ``"pycocotools"`` or ``"faster_coco_eval"`` (same numbers, the latter faster).
        class_names: names of the contiguous labels ``0..C-1``; enables per-class AP.

    Inputs to :meth:`update`, one dict per image (torchmetrics' format):
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
        # torchmetrics drops images without ground-truth masks when evaluating "segm" alone (so
        # their false positives vanish); with "bbox" alongside, every image is kept.
        self._tm_iou_types: tuple[IouType, ...] = (
            ("bbox", "segm") if "segm" in iou_types else ("bbox",)
        )
        self.metric = self._new_metric()

    def _new_metric(self) -> MeanAveragePrecision:
        # Gathering is done in compute() (one all_gather_object for all states, uneven ranks
        # allowed), so torchmetrics' own per-tensor sync is switched off.
        return MeanAveragePrecision(
            box_format="xyxy",
            iou_type=self._tm_iou_types,
            backend=self.backend,
            class_metrics=self.class_names is not None,
            sync_on_compute=False,
        )

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
        pred_keys = ("boxes", "scores", "labels")  # boxes even for "segm": see _tm_iou_types
        tm_preds = [_to_torchmetrics(p, pred_keys, wants_masks) for p in preds]
        target_keys = ("boxes", "labels", "iscrowd", "area")
        tm_targets = [_to_torchmetrics(t, target_keys, wants_masks) for t in targets]
        self.metric.update(tm_preds, tm_targets)

    def compute(self) -> dict[str, float]:
        """AP over every image seen on every rank, keyed ``"<iou_type>/AP"`` etc. (see class docstring)."""
        # Evaluate on a fresh metric filled with every rank's images: the local state stays as it
        # was (more updates may follow) and torchmetrics' compute() cache cannot go stale.
        metric = self._new_metric()
        for name, value in self.metric.metric_state.items():
            setattr(metric, name, all_gather_list(value))
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*was called before the ``update`` method")
            return self._results(metric.compute())

    def reset(self) -> None:
        """Forget all images."""
        self.metric.reset()

    def _results(self, raw: dict[str, Tensor]) -> dict[str, float]:
        results: dict[str, float] = {}
        for iou_type in self.iou_types:
            prefix = f"{iou_type}_" if len(self._tm_iou_types) > 1 else ""
            for tm_key, key in _SUMMARY_KEYS.items():
                results[f"{iou_type}/{key}"] = _nan_if_negative(float(raw[prefix + tm_key]))
            if self.class_names is not None:
                # torchmetrics returns 0-d tensors when one class was seen: flatten to lists
                per_class = dict(
                    zip(
                        raw["classes"].reshape(-1).tolist(),
                        raw[prefix + "map_per_class"].reshape(-1).tolist(),
                    )
                )
                for label, name in enumerate(self.class_names):
                    results[f"{iou_type}/AP-{name}"] = _nan_if_negative(per_class.get(label, -1.0))
        return results


def _nan_if_negative(value: float) -> float:
    """COCOeval writes -1 where a metric is undefined; Detectron2 reports nan."""
    return value if value >= 0 else math.nan
