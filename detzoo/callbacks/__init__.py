"""Lightning callbacks for detzoo models."""

from detzoo.callbacks.backbone_weights import BackboneWeights
from detzoo.callbacks.prediction_images import PredictionImages, draw_predictions

__all__ = ["BackboneWeights", "PredictionImages", "draw_predictions"]
