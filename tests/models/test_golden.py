"""Fidelity: Detectron2 checkpoints converted by detzoo predict what Detectron2 predicts.

Fixtures: ``../shared/golden`` (see its README): deterministic weights by parameter name, two photos
run as one batch at their own sizes, ``SCORE_THRESH_TEST=0``. The comparison follows the README:
as sets, boxes within 0.01 px, scores/logits within 1e-4.
"""

import pytest
import torch

from detzoo.backbones import FPN, LastLevelMaxPool, LastLevelP6P7, ResNet
from detzoo.models.faster_rcnn import FasterRCNN
from detzoo.models.retinanet import RetinaNet

from ..golden_utils import (
    assert_golden_proposals_match,
    golden_images,
    golden_outputs,
    load_golden_model,
    match_golden_instances,
)


def _faster_rcnn_r50_fpn():
    return FasterRCNN(
        FPN(ResNet(50), top_block=LastLevelMaxPool()), num_classes=80, score_thresh=0.0
    )


def _faster_rcnn_r50_c4():
    return FasterRCNN(ResNet(50, out_features=["res4"]), num_classes=80, score_thresh=0.0)


def _retinanet_r50_fpn():
    backbone = FPN(
        ResNet(50, out_features=["res3", "res4", "res5"]),
        in_features=["res3", "res4", "res5"],
        top_block=LastLevelP6P7(2048, 256, in_feature="res5"),
    )
    return RetinaNet(backbone, num_classes=80, score_thresh=0.0)


MODELS = {
    "faster_rcnn_R50_FPN": _faster_rcnn_r50_fpn,
    "faster_rcnn_R50_C4": _faster_rcnn_r50_c4,
    "retinanet_R50_FPN": _retinanet_r50_fpn,
}


def _load(golden_dir, tmp_path, arch):
    arch_dir = golden_dir / arch
    model = load_golden_model(MODELS[arch](), arch_dir, tmp_path)
    return model, golden_images(golden_dir), *golden_outputs(arch_dir)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_predictions_match_detectron2(golden_dir, tmp_path, arch):
    model, images, gold, meta = _load(golden_dir, tmp_path, arch)
    with torch.no_grad():
        preds = model(images)
        proposals = model.proposals(images) if hasattr(model, "proposals") else None
    for i, (pred, info) in enumerate(zip(preds, meta["images"])):
        assert len(pred["boxes"]) == info["num_instances"]
        pairs = match_golden_instances(gold, pred, i)
        assert len(pairs) >= 0.95 * info["num_instances"]
        if proposals is not None:
            assert_golden_proposals_match(gold, proposals[i], i)
