"""Fidelity of Panoptic FPN: a Detectron2 checkpoint converted by detzoo predicts what Detectron2
predicts (``../shared/golden/panoptic_fpn_R50``, Detectron2's
``COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml``; see the fixtures' README): proposals,
boxes and scores as sets, masks of matched instances (IoU >= 0.99), the semantic argmax and the
panoptic category of every pixel (>= 99% agree)."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from detzoo.backbones import FPN, LastLevelMaxPool, ResNet
from detzoo.config import build
from detzoo.models import PanopticFPN
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

ARCH = "panoptic_fpn_R50"
CONFIGS = Path(__file__).resolve().parents[2] / "zoo_configs"


def _model(depth: int = 50) -> PanopticFPN:
    backbone = FPN(ResNet(depth), top_block=LastLevelMaxPool())
    return PanopticFPN(backbone, num_classes=80, num_stuff_classes=53)


@pytest.fixture(scope="module")
def predictions(golden_dir, tmp_path_factory):
    arch_dir = golden_dir / ARCH
    model = load_golden_model(_model(), arch_dir, tmp_path_factory.mktemp(ARCH))
    model.set_test_thresholds(score_thresh=0.0)  # the box predictor's and the merge's
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
def test_instances_match_detectron2(predictions, image):
    preds, _, gold, meta = predictions
    pred, info = preds[image], meta["images"][image]
    assert len(pred["boxes"]) == info["num_instances"]
    pairs = match_golden_instances(gold, pred, image)
    assert len(pairs) >= 0.95 * info["num_instances"]
    assert_masks_match(golden_masks(info), pred["masks"], pairs)


@pytest.mark.parametrize("image", [0, 1])
def test_semantic_argmax_matches_detectron2(predictions, image):
    preds, _, gold, meta = predictions
    info = meta["images"][image]
    logits = preds[image]["sem_seg"]
    assert logits.shape == (54, info["height"], info["width"])
    agree = (logits.argmax(0) == gold[f"sem_seg/{image}/argmax"].long()).double().mean().item()
    assert agree >= 0.99, f"semantic argmax agrees on {agree:.4%} of pixels"
    # the per-channel mean logit over the image, a check of the logits themselves
    torch.testing.assert_close(
        logits.mean(dim=(1, 2)), gold[f"sem_seg/{image}/logits_mean"], atol=1e-3, rtol=1e-4
    )


def _category_map(seg: torch.Tensor, segments_info: list[dict]) -> torch.Tensor:
    """Per pixel: thing class, 1000 + stuff channel, or -1 for void."""
    out = torch.full(seg.shape, -1, dtype=torch.int64)
    for s in segments_info:
        out[seg == s["id"]] = s["category_id"] + (0 if s["isthing"] else 1000)
    return out


@pytest.mark.parametrize("image", [0, 1])
def test_panoptic_categories_match_detectron2(predictions, image):
    preds, _, gold, meta = predictions
    pred, info = preds[image], meta["images"][image]
    seg = pred["panoptic_seg"]
    assert seg.dtype == torch.int32 and seg.shape == (info["height"], info["width"])
    assert sorted(torch.unique(seg[seg > 0]).tolist()) == [s["id"] for s in pred["segments_info"]]
    ours = _category_map(seg, pred["segments_info"])
    theirs = _category_map(gold[f"panoptic/{image}/seg"], info["segments_info"])
    agree = (ours == theirs).double().mean().item()
    assert agree >= 0.99, f"panoptic categories agree on {agree:.4%} of pixels"


def test_r101_checkpoint_converts_strictly(golden_dir):
    spec = json.loads((golden_dir / "params_only" / "panoptic_fpn_R101.json").read_text())
    params = spec.get("params", spec)
    assert any(k.startswith("sem_seg_head.") for k in params)
    model = _model(101)
    checkpoint = {k: torch.empty(shape, device="meta") for k, shape in params.items()}
    check_compatible(model, rename(checkpoint, getattr(model, "DETECTRON2_RENAMES", ())), ARCH)


@pytest.mark.parametrize("name", ["R50_1x", "R50_3x", "R101_3x"])
def test_zoo_configs_build_detectron2s_architecture(golden_dir, name):
    config = CONFIGS / "coco" / f"panoptic_fpn_{name}.yaml"
    model = build(yaml.safe_load(config.read_text())["model"])
    arch = golden_dir / (ARCH if name.startswith("R50") else "params_only/panoptic_fpn_R101.json")
    source = arch / "params.json" if arch.is_dir() else arch
    spec = json.loads(source.read_text())
    params = spec.get("params", spec)
    weights = {
        k: torch.empty(v["shape"] if isinstance(v, dict) else v, device="meta")
        for k, v in params.items()
    }
    check_compatible(model, rename(weights, getattr(model, "DETECTRON2_RENAMES", ())), str(config))
