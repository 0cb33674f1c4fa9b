"""Fidelity of Keypoint R-CNN: a Detectron2 checkpoint converted by detzoo predicts the boxes, scores
and keypoints Detectron2 predicts (``../shared/golden/keypoint_rcnn_R50_FPN``, see its README):
boxes/scores as sets (0.01 px, 1e-4), then keypoints of matched instances x, y within 0.01 px and
score within 1e-4."""

import json

import pytest
import torch
import torch.nn.functional as F

from detzoo.backbones import FPN, LastLevelMaxPool, ResNet
from detzoo.models import KeypointRCNN
from detzoo.zoo.detectron2 import check_compatible, rename

from ..golden_utils import (
    assert_golden_proposals_match,
    golden_images,
    golden_outputs,
    load_golden_model,
    match_golden_instances,
)

ARCH = "keypoint_rcnn_R50_FPN"


def _keypoint_rcnn(depth: int) -> KeypointRCNN:
    backbone = FPN(ResNet(depth), top_block=LastLevelMaxPool())
    return KeypointRCNN(backbone, num_keypoints=17, num_classes=1, score_thresh=0.0)


@pytest.fixture(scope="module")
def golden_run(golden_dir, tmp_path_factory):
    """The converted model, its predictions, RPN proposals and FPN features on the golden batch,
    and the golden tensors and metadata."""
    arch_dir = golden_dir / ARCH
    model = load_golden_model(_keypoint_rcnn(50), arch_dir, tmp_path_factory.mktemp(ARCH))
    images = golden_images(golden_dir)
    with torch.no_grad():
        preds = model(images)
        batch = model.preprocess(images)
        features = model.backbone(batch.tensor)
        proposals, _ = model.proposal_generator(features, batch.image_sizes)
    return model, features, preds, proposals, *golden_outputs(arch_dir)


@pytest.mark.parametrize("image", [0, 1])
def test_boxes_and_proposals_match_detectron2(golden_run, image):
    _, _, preds, proposals, gold, meta = golden_run
    num_instances = meta["images"][image]["num_instances"]
    assert len(preds[image]["boxes"]) == num_instances
    assert len(match_golden_instances(gold, preds[image], image)) >= 0.95 * num_instances
    assert_golden_proposals_match(gold, proposals[image], image)


def _argmax_tie_gap(model, features, image, box, keypoint, gold_xy) -> float:
    """How far below the maximum of detzoo's box-size heatmap the cell holding Detectron2's
    keypoint ``gold_xy`` lies (logit units; ~0 for an argmax near-tie)."""
    head = model.roi_heads.keypoint_head
    boxes = [box[None] if i == image else box.new_zeros((0, 4)) for i in range(2)]
    with torch.no_grad():
        logits = head.layers(head.pool(features, boxes))
    width, height = (box[2] - box[0]).clamp(min=1), (box[3] - box[1]).clamp(min=1)
    size = (int(height.ceil()), int(width.ceil()))
    heatmap = F.interpolate(logits, size=size, mode="bicubic", align_corners=False)[0, keypoint]
    col = int(torch.round((gold_xy[0] - box[0]) * size[1] / width - 0.5))
    row = int(torch.round((gold_xy[1] - box[1]) * size[0] / height - 0.5))
    return float(heatmap.max() - heatmap[row, col])


@pytest.mark.parametrize("image", [0, 1])
def test_keypoints_match_detectron2(golden_run, image):
    """x, y within 0.01 px and score within 1e-4 for matched instances. A keypoint whose heatmap
    has two maxima within float noise (< 1e-5 apart) may land on either: Detectron2's argmax
    picks one from its logits, detzoo's from logits equal to ~1e-6; those are checked to be such
    ties (and their scores, the maximum's, must still agree)."""
    model, features, preds, _, gold, meta = golden_run
    pred = preds[image]
    assert pred["keypoints"].shape == (meta["images"][image]["num_instances"], 17, 3)
    gold_index, ours_index = (
        torch.tensor(p) for p in zip(*match_golden_instances(gold, pred, image))
    )
    gold_kpts = gold[f"instances/{image}/keypoints"][gold_index]
    ours_kpts = pred["keypoints"][ours_index]
    torch.testing.assert_close(ours_kpts[..., 2], gold_kpts[..., 2], rtol=0, atol=1e-4)
    moved = ((ours_kpts[..., :2] - gold_kpts[..., :2]).abs() > 0.01).any(dim=2)
    for instance, keypoint in moved.nonzero().tolist():
        box = pred["boxes"][ours_index[instance]]
        gap = _argmax_tie_gap(model, features, image, box, keypoint, gold_kpts[instance, keypoint])
        assert gap < 1e-5, (
            f"image {image} instance {int(ours_index[instance])} keypoint {keypoint}: detzoo "
            f"{ours_kpts[instance, keypoint].tolist()} vs Detectron2 "
            f"{gold_kpts[instance, keypoint].tolist()}; Detectron2's cell is {gap:.3g} below the max"
        )
    assert moved.sum() <= 0.01 * moved.numel()


def test_r101_checkpoint_converts_strictly(golden_dir):
    """Every parameter of Detectron2's keypoint_rcnn_R_101_FPN_3x has a detzoo home of its shape,
    and every detzoo parameter comes from the checkpoint (shapes only: meta tensors)."""
    spec = json.loads((golden_dir / "params_only" / "keypoint_rcnn_R101_FPN.json").read_text())
    params = spec.get("params", spec)
    assert any(name.startswith("roi_heads.keypoint_head.conv_fcn8") for name in params)
    model = _keypoint_rcnn(101)
    checkpoint = {name: torch.empty(shape, device="meta") for name, shape in params.items()}
    weights = rename(checkpoint, getattr(model, "DETECTRON2_RENAMES", ()))
    check_compatible(model, weights, "keypoint_rcnn_R101_FPN.json")
