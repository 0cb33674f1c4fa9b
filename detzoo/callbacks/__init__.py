"""Lightning callbacks for detzoo models."""

from detzoo.callbacks.backbone_weights import BackboneWeights
from detzoo.callbacks.prediction_images import PredictionImages, draw_predictions
from detzoo.callbacks.progress import TrainingProgress
from detzoo.callbacks.wandb_images import WandbPredictionImages

__all__ = [
    "BackboneWeights",
    "PredictionImages",
    "TrainingProgress",
    "WandbPredictionImages",
    "draw_predictions",
]
