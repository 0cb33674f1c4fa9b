"""detzoo: a PyTorch Lightning model zoo for object detection and segmentation."""

__version__ = "0.1.0.dev0"
