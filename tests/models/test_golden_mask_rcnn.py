"""Fidelity of Mask R-CNN: a Detectron2 checkpoint converted by detzoo predicts the boxes, scores
and masks Detectron2 predicts (``../shared/golden/mask_rcnn_R50_FPN``, see its README): boxes and
scores as sets (0.01 px, 1e-4), then the masks of matched instances (mask IoU >= 0.99 against the
fixture's COCO RLEs). The larger variants (C4, R101, X101-32x8d) are checked for a strict
conversion of every parameter."""

import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from detzoo.backbones import FPN, LastLevelMaxPool, ResNet
from detzoo.models import MaskRCNN
from detzoo.zoo.detectron2 import check_compatible, rename

from ..golden_utils import (
    golden_images,
    golden_outputs,
    load_golden_model,
    match_golden_instances,
)

ARCH = "mask_rcnn_R50_FPN"


def _fpn(depth: int, **resnet) -> MaskRCNN:
    backbone = FPN(ResNet(depth, **resnet), top_block=LastLevelMaxPool())
    return MaskRCNN(backbone, num_classes=80, score_thresh=0.0)


VARIANTS = {
    "mask_rcnn_R50_C4": lambda: MaskRCNN(ResNet(50, out_features=["res4"]), num_classes=80),
    "mask_rcnn_R101_FPN": lambda: _fpn(101),
    "mask_rcnn_X101_32x8d_FPN": lambda: _fpn(
        101, num_groups=32, width_per_group=8, stride_in_1x1=False
    ),
}


@pytest.fixture(scope="module")
def predictions(golden_dir, tmp_path_factory):
    arch_dir = golden_dir / ARCH
    model = load_golden_model(_fpn(50), arch_dir, tmp_path_factory.mktemp(ARCH))
    with torch.no_grad():
        preds = model(golden_images(golden_dir))
    return preds, *golden_outputs(arch_dir)


def _matched(predictions, image):
    preds, gold, meta = predictions
    pred, info = preds[image], meta["images"][image]
    return pred, info, match_golden_instances(gold, pred, image)


@pytest.mark.parametrize("image", [0, 1])
def test_boxes_match_detectron2(predictions, image):
    pred, info, pairs = _matched(predictions, image)
    assert len(pred["boxes"]) == info["num_instances"]
    assert len(pairs) >= 0.95 * info["num_instances"]


@pytest.mark.parametrize("image", [0, 1])
def test_masks_match_detectron2(predictions, image):
    pred, info, pairs = _matched(predictions, image)
    masks = pred["masks"]
    assert masks.dtype == torch.bool
    assert masks.shape == (info["num_instances"], info["height"], info["width"])
    gold = mask_utils.decode(info["masks_rle"]).astype(bool)  # [H, W, N]
    worst = []
    for g, o in pairs:
        gold_mask, ours = torch.from_numpy(np.ascontiguousarray(gold[:, :, g])), masks[o]
        union = (gold_mask | ours).sum().item()
        iou = (gold_mask & ours).sum().item() / union if union else 1.0
        worst.append((iou, g))
    iou, g = min(worst)
    assert iou >= 0.99, f"golden instance {g}: mask IoU {iou:.4f} < 0.99"


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_variant_checkpoints_convert_strictly(golden_dir, name):
    """Every parameter of the Detectron2 model has a detzoo home of its shape, and every detzoo
    parameter comes from the checkpoint (shapes only: meta tensors)."""
    spec = json.loads((golden_dir / "params_only" / f"{name}.json").read_text())
    params = spec.get("params", spec)
    assert any(k.startswith("roi_heads.mask_head.") for k in params)
    model = VARIANTS[name]()
    checkpoint = {k: torch.empty(shape, device="meta") for k, shape in params.items()}
    check_compatible(model, rename(checkpoint, getattr(model, "DETECTRON2_RENAMES", ())), name)
