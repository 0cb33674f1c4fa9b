"""Evaluation: COCO box/mask AP, LVIS federated AP, keypoint AP, DensePose AP, panoptic quality and semantic segmentation metrics.

Every evaluator has ``update(preds, targets)``, ``compute() -> dict[str, float]`` and ``reset()``,
takes detzoo's prediction and target dicts, gathers its state from all ranks in ``compute()``
and reports fractions in ``[0, 1]`` under Detectron2's key names.
"""

from detzoo.evaluation.coco import CocoEvaluator
from detzoo.evaluation.densepose import DensePoseEvaluator
from detzoo.evaluation.keypoints import COCO_PERSON_OKS_SIGMAS, KeypointEvaluator
from detzoo.evaluation.lvis import LVISEvaluator
from detzoo.evaluation.panoptic import PanopticEvaluator
from detzoo.evaluation.panoptic_fpn import PanopticFPNEvaluator
from detzoo.evaluation.semantic import SemSegEvaluator
from detzoo.evaluation.surfaces import SMPLGeodesics, SurfaceDistance
from detzoo.evaluation.table import format_metrics_table, log_metrics

__all__ = [
    "COCO_PERSON_OKS_SIGMAS",
    "CocoEvaluator",
    "DensePoseEvaluator",
    "KeypointEvaluator",
    "LVISEvaluator",
    "PanopticEvaluator",
    "PanopticFPNEvaluator",
    "SMPLGeodesics",
    "SemSegEvaluator",
    "SurfaceDistance",
    "format_metrics_table",
    "log_metrics",
]
