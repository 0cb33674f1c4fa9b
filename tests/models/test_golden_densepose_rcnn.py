"""Fidelity of DensePose R-CNN: a Detectron2 checkpoint converted by detzoo predicts the boxes,
scores and DensePose charts Detectron2 predicts (``../shared/golden/densepose_rcnn_R50_FPN``, see
its README): boxes/scores and proposals as sets (0.01 px, 1e-4); for matched instances among the
first 20 of each image, the 112x112 coarse and fine argmax agree on >= 99% of the cells and U, V
(at the fine argmax part) within 2e-3 where the fine part agrees.

The DensePose branch costs ~0.5 s per detection on a CPU (eight 512-channel convs at 28x28), so it
runs on the 20 best detections of each image only (what the fixture holds): the ROI heads are
called once more with ``detections_per_image=20``, whose detections are the first 20 of the 100
(ranked by score)."""

import json

import pytest
import torch

from detzoo.backbones import FPN, LastLevelMaxPool, ResNet
from detzoo.models.densepose_rcnn import DensePoseRCNN
from detzoo.models.postprocess import rescale_detections
from detzoo.zoo.detectron2 import check_compatible, rename

from ..golden_utils import (
    assert_golden_proposals_match,
    golden_images,
    golden_outputs,
    load_golden_model,
    match_as_sets,
    match_golden_instances,
)

ARCH = "densepose_rcnn_R50_FPN"
NUM_CHARTS = 20  # instances per image whose charts the fixture holds


def _densepose_rcnn(depth: int) -> DensePoseRCNN:
    backbone = FPN(ResNet(depth), top_block=LastLevelMaxPool())
    return DensePoseRCNN(backbone, num_classes=1, score_thresh=0.0)


@pytest.fixture(scope="module")
def golden_run(golden_dir, tmp_path_factory):
    """Box detections (100 per image), RPN proposals, and predictions with DensePose charts for
    the 20 best detections per image, on the golden batch; then the golden tensors and metadata."""
    arch_dir = golden_dir / ARCH
    model = load_golden_model(_densepose_rcnn(50), arch_dir, tmp_path_factory.mktemp(ARCH))
    batch = model.preprocess(golden_images(golden_dir))
    heads = model.roi_heads
    with torch.no_grad():
        features = model.backbone(batch.tensor)
        proposals, _ = model.proposal_generator(features, batch.image_sizes)
        boxes = [p["boxes"] for p in proposals]
        detections = heads.predict_boxes(features, boxes, batch.image_sizes)
        model.set_test_thresholds(detections_per_image=NUM_CHARTS)
        charted, _ = heads(features, boxes, batch.image_sizes)
    charted = [rescale_detections(d, size, size) for d, size in zip(charted, batch.image_sizes)]
    return detections, proposals, charted, *golden_outputs(arch_dir)


@pytest.mark.parametrize("image", [0, 1])
def test_boxes_and_proposals_match_detectron2(golden_run, image):
    detections, proposals, _, gold, meta = golden_run
    num_instances = meta["images"][image]["num_instances"]
    ours = detections[image]
    assert len(ours["boxes"]) == num_instances
    pairs = match_golden_instances(gold, ours, image)
    assert len(pairs) >= 0.95 * num_instances
    assert_golden_proposals_match(gold, proposals[image], image)


@pytest.mark.parametrize("image", [0, 1])
def test_densepose_charts_match_detectron2(golden_run, image):
    _, _, charted, gold, _ = golden_run
    pred = charted[image]
    densepose = pred["densepose"]
    assert densepose["coarse_segm"].shape == (NUM_CHARTS, 2, 112, 112)
    for key in ("fine_segm", "u", "v"):
        assert densepose[key].shape == (NUM_CHARTS, 25, 112, 112)
    prefix = f"densepose/{image}"
    pairs = match_as_sets(
        gold[f"instances/{image}/boxes"][:NUM_CHARTS],
        gold[f"instances/{image}/scores"][:NUM_CHARTS],
        pred["boxes"],
        pred["scores"],
        gold[f"instances/{image}/classes"][:NUM_CHARTS],
        pred["labels"],
    )
    assert len(pairs) >= NUM_CHARTS - 1  # only a top-20 boundary swap may go unmatched
    gold_index, ours_index = (torch.tensor(p) for p in zip(*pairs))
    coarse = densepose["coarse_segm"][ours_index].argmax(dim=1)
    fine = densepose["fine_segm"][ours_index].argmax(dim=1)
    coarse_agree = (coarse == gold[f"{prefix}/coarse_argmax"][gold_index].long()).flatten(1)
    fine_agree = fine == gold[f"{prefix}/fine_argmax"][gold_index].long()
    assert coarse_agree.float().mean(dim=1).min() >= 0.99
    assert fine_agree.flatten(1).float().mean(dim=1).min() >= 0.99
    for key in ("u", "v"):
        ours = densepose[key][ours_index].gather(1, fine[:, None])[:, 0]
        error = (ours - gold[f"{prefix}/{key}"][gold_index].float()).abs()[fine_agree]
        assert error.max() <= 2e-3, f"{key}: max error {float(error.max()):.2e}"


def test_r101_checkpoint_converts_strictly(golden_dir):
    """Detectron2's densepose_rcnn_R_101_FPN_s1x has the R50 model's DensePose and box heads on
    an R101 FPN backbone: its parameter list (the R101 FPN backbone of faster_rcnn_R101_FPN, the
    rest from the R50 fixture) converts strictly into detzoo's R101 model (shapes only)."""
    r50 = json.loads((golden_dir / ARCH / "params.json").read_text())
    spec = json.loads((golden_dir / "params_only" / "faster_rcnn_R101_FPN.json").read_text())
    r101 = spec.get("params", spec)
    params = {k: v["shape"] for k, v in r50.items() if not k.startswith("backbone.")}
    params.update({k: v for k, v in r101.items() if k.startswith("backbone.")})
    assert any(k.startswith("backbone.bottom_up.res4.22.") for k in params)
    assert any(k.startswith("roi_heads.decoder.p5.4.") for k in params)
    checkpoint = {name: torch.empty(shape, device="meta") for name, shape in params.items()}
    model = _densepose_rcnn(101)
    check_compatible(model, rename(checkpoint, model.DETECTRON2_RENAMES), "densepose R101")
