"""Datasets, transforms and Lightning data modules (see DESIGN.md's data contracts)."""

from .coco import CocoDetection
from .collate import DetectionBatch, collate_detection
from .datamodule import CocoDataModule, DetectionDataModule, ShapesDataModule
from .dataset import DetectionDataset, load_image
from .densepose import CocoDensePose
from .image_file import CorruptImageError, read_image_file
from .keypoints import CocoKeypoints
from .lvis import LvisDetection
from .panoptic import CocoPanoptic
from .readers import READERS, build_dataset
from .samplers import (
    AspectRatioGroupedBatchSampler,
    InferenceSampler,
    RepeatFactorTrainingSampler,
    SeededBatchSampler,
    SeededDataset,
    TrainingSampler,
    repeat_factors_from_labels,
)
from .skipping import SkipCorruptImages, SkippedImage
from .transforms import (
    ColorJitter,
    DetectionTransforms,
    FixedSizeCrop,
    RandomFlip,
    ResizeScale,
    ResizeShortestEdge,
    build_test_transforms,
    build_train_transforms,
    shortest_edge_size,
)
from .voc import VOC_CLASS_NAMES, VocDetection

__all__ = [
    "READERS",
    "VOC_CLASS_NAMES",
    "AspectRatioGroupedBatchSampler",
    "CocoDataModule",
    "CocoDensePose",
    "CocoDetection",
    "CocoKeypoints",
    "CocoPanoptic",
    "ColorJitter",
    "CorruptImageError",
    "DetectionBatch",
    "DetectionDataModule",
    "DetectionDataset",
    "DetectionTransforms",
    "FixedSizeCrop",
    "LvisDetection",
    "RandomFlip",
    "InferenceSampler",
    "RepeatFactorTrainingSampler",
    "SeededBatchSampler",
    "SeededDataset",
    "ResizeScale",
    "ResizeShortestEdge",
    "ShapesDataModule",
    "SkipCorruptImages",
    "SkippedImage",
    "TrainingSampler",
    "VocDetection",
    "build_dataset",
    "build_test_transforms",
    "build_train_transforms",
    "collate_detection",
    "load_image",
    "read_image_file",
    "repeat_factors_from_labels",
    "shortest_edge_size",
]
