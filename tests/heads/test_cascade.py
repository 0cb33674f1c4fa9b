"""Cascade R-CNN heads, hand-computed: stage IoU thresholds, per-stage box-coder weights, gradient
scaling across stages, test-time score averaging and the next stage's proposals."""

import math

import pytest
import torch

from detzoo.heads.box_coder import BoxCoder
from detzoo.heads.box_head import ConvFCHead
from detzoo.heads.cascade import (
    CASCADE_BOX_WEIGHTS,
    CASCADE_IOUS,
    CascadeROIHeads,
    average_stage_scores,
    next_stage_proposals,
    scale_gradient,
)
from detzoo.heads.fast_rcnn import FastRCNNOutputLayers
from detzoo.heads.matcher import Matcher
from detzoo.heads.poolers import ROIPooler
from detzoo.heads.roi_sampling import label_proposals

NUM_CLASSES = 2
CHANNELS = 4


def _heads(**predictor_kwargs) -> CascadeROIHeads:
    """Three stages on one feature level (stride 4), with Detectron2's IoUs and coder weights."""
    heads, predictors, matchers = [], [], []
    for iou, weights in zip(CASCADE_IOUS, CASCADE_BOX_WEIGHTS):
        heads.append(ConvFCHead((CHANNELS, 7, 7), fc_dims=(8,)))
        predictors.append(
            FastRCNNOutputLayers(
                8,
                NUM_CLASSES,
                box_coder=BoxCoder(weights),
                cls_agnostic_bbox_reg=True,
                **predictor_kwargs,
            )
        )
        matchers.append(Matcher([iou], [0, 1]))
    pooler = ROIPooler(7, [0.25], sampling_ratio=0)
    return CascadeROIHeads(["p2"], pooler, heads, predictors, matchers)


def _features(height: int = 64, width: int = 64) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"p2": torch.randn(1, CHANNELS, height // 4, width // 4, generator=g)}


def _set_outputs(predictor: FastRCNNOutputLayers, probs, deltas=(0.0, 0.0, 0.0, 0.0)) -> None:
    """Makes ``predictor`` output the class probabilities ``probs`` and the ``deltas`` for every
    proposal, whatever its features."""
    with torch.no_grad():
        predictor.cls_score.weight.zero_()
        predictor.cls_score.bias.copy_(torch.tensor(probs).log())
        predictor.bbox_pred.weight.zero_()
        predictor.bbox_pred.bias.copy_(torch.tensor(deltas))


def test_detectron2_stage_settings():
    assert CASCADE_IOUS == (0.5, 0.6, 0.7)
    assert CASCADE_BOX_WEIGHTS == ((10, 10, 5, 5), (20, 20, 10, 10), (30, 30, 15, 15))


def test_iou_055_is_foreground_in_stage_1_only():
    heads = _heads()
    gt = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    proposal = torch.tensor([[0.0, 0.0, 100.0, 55.0]])  # inside the gt box: IoU = 5500 / 10000
    labels = [
        int(label_proposals(proposal, gt, torch.tensor([1]), m, NUM_CLASSES).gt_classes[0])
        for m in heads.proposal_matchers
    ]
    assert labels == [1, NUM_CLASSES, NUM_CLASSES]  # class 1 in stage 1; background afterwards


def test_each_stage_trains_with_its_own_threshold():
    """Through the training path: with zero deltas the boxes stay put across stages, so the
    proposal at IoU 0.55 (and the appended ground-truth box) reach every stage; the proposal is
    foreground in stage 1 only, the ground-truth box in all three."""
    torch.manual_seed(0)
    heads = _heads().train()
    seen = []
    for predictor in heads.box_predictor:
        _set_outputs(predictor, [0.4, 0.4, 0.2])
        losses = predictor.losses

        def recording(predictions, boxes, gt_classes, gt_boxes, losses=losses):
            seen.append({tuple(b.tolist()): int(c) for b, c in zip(boxes, gt_classes)})
            return losses(predictions, boxes, gt_classes, gt_boxes)

        predictor.losses = recording
    gt = {"boxes": torch.tensor([[0.0, 0.0, 60.0, 60.0]]), "labels": torch.tensor([1])}
    proposal = (0.0, 0.0, 60.0, 33.0)  # IoU 0.55
    _, losses = heads(_features(), [torch.tensor([proposal])], [(64, 64)], [gt])
    gt_box = (0.0, 0.0, 60.0, 60.0)
    assert seen == [
        {proposal: 1, gt_box: 1},
        {proposal: NUM_CLASSES, gt_box: 1},
        {proposal: NUM_CLASSES, gt_box: 1},
    ]
    assert set(losses) == {f"{t}_stage{k}" for t in ("loss_cls", "loss_box_reg") for k in range(3)}
    # loss_cls = -log(0.4) in stage 1 (both foreground, class 1); stages 2/3: -(log 0.4 + log 0.2) / 2
    assert float(losses["loss_cls_stage0"].detach()) == pytest.approx(-math.log(0.4), rel=1e-5)
    for k in (1, 2):
        expected = -(math.log(0.4) + math.log(0.2)) / 2
        assert float(losses[f"loss_cls_stage{k}"].detach()) == pytest.approx(expected, rel=1e-5)


def test_per_stage_box_coder_weights_round_trip():
    heads = _heads()
    src = torch.tensor([[0.0, 0.0, 10.0, 10.0]])  # centre (5, 5), 10 x 10
    tgt = torch.tensor([[1.0, 2.0, 21.0, 12.0]])  # centre (11, 7), 20 x 10
    for k, predictor in enumerate(heads.box_predictor):
        n = k + 1  # stage k's weights are (k + 1) x stage 0's
        deltas = predictor.box_coder.encode(src, tgt)
        expected = torch.tensor([[n * 10 * 6 / 10, n * 10 * 2 / 10, n * 5 * math.log(2), 0.0]])
        torch.testing.assert_close(deltas, expected)
        # the predictor decodes its own deltas back onto the target
        _set_outputs(predictor, [0.4, 0.4, 0.2], deltas[0].tolist())
        predictions = predictor(torch.zeros(1, 8))
        torch.testing.assert_close(predictor.predict_boxes(predictions, [src])[0], tgt)


def test_gradient_through_the_scaler_is_one_third():
    x = torch.randn(3, 5, requires_grad=True)
    y = scale_gradient(x, 1.0 / 3)
    assert torch.equal(y, x)
    y.sum().backward()
    torch.testing.assert_close(x.grad, torch.full((3, 5), 1.0 / 3))


def test_each_stage_sends_a_third_of_its_gradient_to_the_features():
    heads = _heads()
    boxes = [torch.tensor([[4.0, 4.0, 40.0, 36.0], [10.0, 20.0, 50.0, 60.0]])]
    for stage in range(3):
        features = {"p2": _features()["p2"].requires_grad_()}
        heads.box_features(features, boxes, stage).sum().backward()
        reference = {"p2": _features()["p2"].requires_grad_()}
        pooled = heads.box_pooler([reference["p2"]], boxes)
        heads.box_head[stage](pooled).sum().backward()
        torch.testing.assert_close(features["p2"].grad, reference["p2"].grad / 3)


def test_score_averaging_hand_computed():
    scores = average_stage_scores(
        [
            [torch.tensor([[0.6, 0.3, 0.1]]), torch.tensor([[0.9, 0.0, 0.1]])],  # stage 1, 2 images
            [torch.tensor([[0.3, 0.6, 0.1]]), torch.tensor([[0.0, 0.9, 0.1]])],
            [torch.tensor([[0.3, 0.3, 0.4]]), torch.tensor([[0.0, 0.0, 1.0]])],
        ]
    )
    torch.testing.assert_close(scores[0], torch.tensor([[0.4, 0.4, 0.2]]))
    torch.testing.assert_close(scores[1], torch.tensor([[0.3, 0.3, 0.4]]))


def test_inference_averages_scores_and_keeps_the_last_stages_boxes():
    heads = _heads(score_thresh=0.0).eval()
    _set_outputs(heads.box_predictor[0], [0.6, 0.3, 0.1])
    _set_outputs(heads.box_predictor[1], [0.3, 0.6, 0.1])
    # the last stage moves the box right by dx / wx * width = 3 / 30 * 20 = 2 px
    _set_outputs(heads.box_predictor[2], [0.3, 0.3, 0.4], [3.0, 0.0, 0.0, 0.0])
    with torch.no_grad():
        (det,), _ = heads(_features(), [torch.tensor([[10.0, 10.0, 30.0, 30.0]])], [(64, 64)])
    torch.testing.assert_close(det["scores"], torch.tensor([0.4, 0.4]))
    assert sorted(det["labels"].tolist()) == [0, 1]
    torch.testing.assert_close(det["boxes"], torch.tensor([[12.0, 10.0, 32.0, 30.0]] * 2))


def test_next_stage_proposals_are_clipped_detached_and_nonempty_in_training():
    boxes = torch.tensor([[-5.0, 2.0, 30.0, 70.0], [10.0, 10.0, 10.0, 20.0]], requires_grad=True)
    train = next_stage_proposals([boxes * 1], [(64, 48)], drop_empty=True)[0]
    torch.testing.assert_close(train, torch.tensor([[0.0, 2.0, 30.0, 64.0]]))
    assert not train.requires_grad
    test = next_stage_proposals([boxes * 1], [(64, 48)], drop_empty=False)[0]
    assert len(test) == 2  # kept so that every stage scores the same proposals


def test_cascade_needs_class_agnostic_stages_and_matching_lengths():
    head = ConvFCHead((CHANNELS, 7, 7), fc_dims=(8,))
    pooler = ROIPooler(7, [0.25], sampling_ratio=0)
    per_class = FastRCNNOutputLayers(8, NUM_CLASSES)
    with pytest.raises(ValueError, match="class-agnostic"):
        CascadeROIHeads(["p2"], pooler, [head], [per_class], [Matcher([0.5], [0, 1])])
    agnostic = FastRCNNOutputLayers(8, NUM_CLASSES, cls_agnostic_bbox_reg=True)
    with pytest.raises(ValueError, match="one box head, predictor and matcher per stage"):
        CascadeROIHeads(["p2"], pooler, [head], [agnostic], [Matcher([0.5], [0, 1])] * 2)
    with pytest.raises(ValueError, match="proposal_matchers"):
        CascadeROIHeads(
            ["p2"],
            pooler,
            [head],
            [agnostic],
            [Matcher([0.5], [0, 1])],
            matcher=Matcher([0.5], [0, 1]),
        )
