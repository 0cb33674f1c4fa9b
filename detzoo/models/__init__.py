"""The detzoo LightningModules, one per algorithm, on the shared :class:`DetectionModel` base."""

from detzoo.models.base import DetectionModel
from detzoo.models.faster_rcnn import FasterRCNN
from detzoo.models.retinanet import RetinaNet
from detzoo.models.solver import Solver

__all__ = ["DetectionModel", "FasterRCNN", "RetinaNet", "Solver"]
