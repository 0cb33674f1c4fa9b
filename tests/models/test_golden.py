"""Fidelity: Detectron2 checkpoints converted by detzoo predict what Detectron2 predicts.

Fixtures: ``../shared/golden`` (see its README): deterministic weights by parameter name, two photos
run as one batch at their own sizes, ``SCORE_THRESH_TEST=0``. The comparison follows the README:
as sets, boxes within 0.01 px, scores/logits within 1e-4.
"""

import pickle

import pytest
import torch

from detzoo.backbones import FPN, LastLevelMaxPool, LastLevelP6P7, ResNet
from detzoo.models.faster_rcnn import FasterRCNN
from detzoo.models.retinanet import RetinaNet
from detzoo.zoo.detectron2 import load_detectron2_weights

from ..golden_utils import golden_images, golden_outputs, golden_weights, match_as_sets


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
    checkpoint = tmp_path / "model_final.pkl"
    checkpoint.write_bytes(pickle.dumps({"model": golden_weights(arch_dir / "params.json")}))
    model = MODELS[arch]()
    load_detectron2_weights(model, checkpoint)
    return model.eval(), golden_images(golden_dir), *golden_outputs(arch_dir)


@pytest.mark.parametrize("arch", sorted(MODELS))
def test_predictions_match_detectron2(golden_dir, tmp_path, arch):
    model, images, gold, meta = _load(golden_dir, tmp_path, arch)
    with torch.no_grad():
        preds = model(images)
        proposals = model.proposals(images) if hasattr(model, "proposals") else None
    for i, (pred, info) in enumerate(zip(preds, meta["images"])):
        assert len(pred["boxes"]) == info["num_instances"]
        pairs = match_as_sets(
            gold[f"instances/{i}/boxes"],
            gold[f"instances/{i}/scores"],
            pred["boxes"],
            pred["scores"],
            gold[f"instances/{i}/classes"],
            pred["labels"],
        )
        assert len(pairs) >= 0.95 * info["num_instances"]
        if proposals is not None:
            gold_boxes = gold[f"proposals/{i}/boxes"]
            assert len(proposals[i]["boxes"]) == len(gold_boxes)
            match_as_sets(
                gold_boxes,
                gold[f"proposals/{i}/objectness_logits"],
                proposals[i]["boxes"],
                proposals[i]["objectness_logits"],
            )
