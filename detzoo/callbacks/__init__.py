"""Lightning callbacks for detzoo models."""

from detzoo.callbacks.prediction_images import PredictionImages, draw_predictions

__all__ = ["PredictionImages", "draw_predictions"]
