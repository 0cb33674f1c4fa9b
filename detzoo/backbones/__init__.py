"""Backbones: ResNet/ResNeXt (Detectron2 layout), FPN, and any timm model."""

from detzoo.backbones.base import Backbone, ShapeSpec
from detzoo.backbones.fpn import FPN, LastLevelMaxPool, LastLevelP6P7
from detzoo.backbones.resnet import ResNet
from detzoo.backbones.timm_backbone import TimmBackbone

__all__ = [
    "FPN",
    "Backbone",
    "LastLevelMaxPool",
    "LastLevelP6P7",
    "ResNet",
    "ShapeSpec",
    "TimmBackbone",
]
