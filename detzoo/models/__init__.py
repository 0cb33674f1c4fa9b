"""The detzoo LightningModules, one per algorithm, on the shared :class:`DetectionModel` base."""

from detzoo.models.base import DetectionModel
from detzoo.models.cascade_rcnn import CascadeRCNN
from detzoo.models.densepose_rcnn import DensePoseRCNN
from detzoo.models.faster_rcnn import FasterRCNN
from detzoo.models.keypoint_rcnn import KeypointRCNN
from detzoo.models.mask_rcnn import MaskRCNN
from detzoo.models.panoptic_fpn import PanopticFPN
from detzoo.models.retinanet import RetinaNet
from detzoo.models.semantic_fpn import SemanticFPN
from detzoo.models.solver import Solver

__all__ = [
    "CascadeRCNN",
    "DensePoseRCNN",
    "DetectionModel",
    "FasterRCNN",
    "KeypointRCNN",
    "MaskRCNN",
    "PanopticFPN",
    "RetinaNet",
    "SemanticFPN",
    "Solver",
]
