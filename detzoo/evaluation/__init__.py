"""Evaluation: COCO box/mask AP, LVIS federated AP, keypoint AP, DensePose AP, panoptic quality and semantic segmentation metrics.

Every evaluator has ``update(preds, targets)``, ``compute() -> dict[str, float]`` and ``reset()``,
takes detzoo's prediction and target dicts, gathers its state from all ranks in ``compute()``
and reports fractions in ``[0, 1]`` under Detectron2's key names. The results writers
(:class:`CocoResultsWriter`, :class:`PanopticResultsWriter`) have the same interface and write
the predictions as Detectron2's results files instead of computing metrics.
"""

from detzoo.evaluation.coco import CocoEvaluator
from detzoo.evaluation.densepose import DensePoseEvaluator
from detzoo.evaluation.keypoints import COCO_PERSON_OKS_SIGMAS, KeypointEvaluator
from detzoo.evaluation.lvis import LVISEvaluator
from detzoo.evaluation.panoptic import PanopticEvaluator
from detzoo.evaluation.panoptic_fpn import PanopticFPNEvaluator
from detzoo.evaluation.panoptic_results import PanopticResultsWriter
from detzoo.evaluation.results_file import CocoResultsWriter
from detzoo.evaluation.semantic import SemSegEvaluator
from detzoo.evaluation.surfaces import SMPLGeodesics, SurfaceDistance
from detzoo.evaluation.table import format_metrics_table, log_metrics

__all__ = [
    "COCO_PERSON_OKS_SIGMAS",
    "CocoEvaluator",
    "CocoResultsWriter",
    "DensePoseEvaluator",
    "KeypointEvaluator",
    "LVISEvaluator",
    "PanopticEvaluator",
    "PanopticFPNEvaluator",
    "PanopticResultsWriter",
    "SMPLGeodesics",
    "SemSegEvaluator",
    "SurfaceDistance",
    "format_metrics_table",
    "log_metrics",
]
