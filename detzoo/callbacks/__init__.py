"""Lightning callbacks for detzoo models."""

from detzoo.callbacks.backbone_weights import BackboneWeights
from detzoo.callbacks.memory_reuse import ReuseFreedMemory, reuse_freed_memory
from detzoo.callbacks.prediction_images import PredictionImages, draw_predictions
from detzoo.callbacks.progress import TrainingProgress
from detzoo.callbacks.wandb_images import WandbPredictionImages

__all__ = [
    "BackboneWeights",
    "PredictionImages",
    "ReuseFreedMemory",
    "TrainingProgress",
    "WandbPredictionImages",
    "draw_predictions",
    "reuse_freed_memory",
]
