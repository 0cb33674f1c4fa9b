"""DensePose R-CNN through ``detzoo fit``: the shapes recipe trains on the figures' DensePose
annotations and validates."""

from pathlib import Path

import pytest

from detzoo.models import DensePoseRCNN

from .recipes import fit_shapes_recipe_briefly
from .reference_metrics import assert_logged, predict_val, reference_coco_metrics


@pytest.mark.slow
def test_shapes_recipe_fits_and_validates(tmp_path, monkeypatch):
    """Two steps on a tiny shapes set at a small size, then validation logs box and DensePose AP.

    The DensePose loss terms are positive (each is exactly 0 when no sampled foreground proposal
    has DensePose annotations) and the logged total is the sum of the logged terms; the logged box
    AP and AR are pycocotools' COCOeval of the trained model's predictions against the val json.
    """
    monkeypatch.chdir(tmp_path)
    cli = fit_shapes_recipe_briefly("densepose_rcnn_R18_FPN.yaml", num_train=6)
    assert isinstance(cli.model, DensePoseRCNN)
    metrics = cli.trainer.callback_metrics
    for term in ("U", "V", "I", "S"):  # the branch trained on the figures' annotations
        assert float(metrics[f"train/loss_densepose_{term}"]) > 0
    terms = [k for k in metrics if k.startswith("train/loss_")]
    assert len(terms) == 8  # RPN (2), box head (2), DensePose (4)
    total = sum(float(metrics[k]) for k in terms)
    assert float(metrics["train/loss"]) == pytest.approx(total, rel=1e-6)
    pairs = predict_val(cli.model, cli.datamodule)
    assert any(len(pred["boxes"]) for pred, _ in pairs)
    reference = reference_coco_metrics(pairs, cli.datamodule.val_dataset, "bbox")
    assert_logged(metrics, reference, reference)
    # GPS-style DensePose AP on the figure's own surface (nan when nothing is detected)
    assert {"val/densepose/AP_GPS", "val/densepose/AP_GPSm"} <= set(metrics)
    assert (Path(cli.trainer.log_dir) / "predictions.png").is_file()
