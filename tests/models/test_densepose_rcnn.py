"""DensePose R-CNN through ``detzoo fit``: the shapes recipe trains on the figures' DensePose
annotations and validates."""

from pathlib import Path

import pytest
import torch

from detzoo.models import DensePoseRCNN

from .recipes import fit_shapes_recipe_briefly


@pytest.mark.slow
def test_shapes_recipe_fits_and_validates(tmp_path, monkeypatch):
    """Two steps on a tiny shapes set at a small size, then validation logs box and DensePose AP."""
    monkeypatch.chdir(tmp_path)
    cli = fit_shapes_recipe_briefly("densepose_rcnn_R18_FPN.yaml", num_train=6)
    assert isinstance(cli.model, DensePoseRCNN)
    metrics = cli.trainer.callback_metrics
    for term in ("U", "V", "I", "S"):  # the branch trained on the figures' annotations
        assert torch.isfinite(metrics[f"train/loss_densepose_{term}"])
    assert "val/bbox/AP" in metrics and 0.0 <= float(metrics["val/bbox/AP"]) <= 1.0
    # GPS-style DensePose AP on the figure's own surface (nan when nothing is detected)
    assert {"val/densepose/AP_GPS", "val/densepose/AP_GPSm"} <= set(metrics)
    assert (Path(cli.trainer.log_dir) / "predictions.png").is_file()
