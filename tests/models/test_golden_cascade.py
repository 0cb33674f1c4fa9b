"""Fidelity of Cascade Mask R-CNN: a Detectron2 checkpoint converted by detzoo predicts what
Detectron2 predicts (``../shared/golden/cascade_mask_rcnn_R50_FPN``, Detectron2's
``Misc/cascade_mask_rcnn_R_50_FPN_1x.yaml``; see the fixtures' README): RPN proposals and boxes /
scores as sets (0.01 px, 1e-4), masks of matched instances with mask IoU >= 0.99."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from detzoo.backbones import FPN, LastLevelMaxPool, ResNet
from detzoo.config import build
from detzoo.models import CascadeRCNN
from detzoo.zoo.detectron2 import check_compatible, rename

from ..golden_utils import (
    assert_golden_proposals_match,
    assert_masks_match,
    golden_images,
    golden_masks,
    golden_outputs,
    load_golden_model,
    match_golden_instances,
)

ARCH = "cascade_mask_rcnn_R50_FPN"
CONFIGS = Path(__file__).resolve().parents[2] / "zoo_configs"


@pytest.fixture(scope="module")
def predictions(golden_dir, tmp_path_factory):
    arch_dir = golden_dir / ARCH
    backbone = FPN(ResNet(50), top_block=LastLevelMaxPool())
    model = CascadeRCNN(backbone, num_classes=80, mask_on=True, score_thresh=0.0)
    model = load_golden_model(model, arch_dir, tmp_path_factory.mktemp(ARCH))
    images = golden_images(golden_dir)
    with torch.no_grad():
        preds = model(images)
        proposals = model.proposals(images)
    return preds, proposals, *golden_outputs(arch_dir)


@pytest.mark.parametrize("image", [0, 1])
def test_proposals_match_detectron2(predictions, image):
    _, proposals, gold, _ = predictions
    assert_golden_proposals_match(gold, proposals[image], image)


@pytest.mark.parametrize("image", [0, 1])
def test_boxes_scores_and_masks_match_detectron2(predictions, image):
    preds, _, gold, meta = predictions
    pred, info = preds[image], meta["images"][image]
    assert len(pred["boxes"]) == info["num_instances"]
    pairs = match_golden_instances(gold, pred, image)
    assert len(pairs) >= 0.95 * info["num_instances"]
    assert pred["masks"].dtype == torch.bool
    assert pred["masks"].shape == (len(pred["boxes"]), info["height"], info["width"])
    assert_masks_match(golden_masks(info), pred["masks"], pairs)


@pytest.mark.parametrize("schedule", ["1x", "3x"])
def test_zoo_config_builds_detectron2s_architecture(golden_dir, schedule):
    """The COCO configs build a model into which the Detectron2 checkpoint's every weight fits."""
    config = CONFIGS / "coco" / f"{ARCH}_{schedule}.yaml"
    model = build(yaml.safe_load(config.read_text())["model"])
    shapes = json.loads((golden_dir / ARCH / "params.json").read_text())
    weights = {name: torch.empty(spec["shape"]) for name, spec in shapes.items()}
    check_compatible(model, rename(weights, getattr(model, "DETECTRON2_RENAMES", ())), str(config))
