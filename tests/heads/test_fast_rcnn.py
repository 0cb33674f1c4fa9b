import torch

from detzoo.heads.box_coder import BoxCoder
from detzoo.heads.fast_rcnn import FastRCNNOutputLayers, detections_from_scores


def test_detections_hand_computed():
    # two proposals, two classes; class-specific boxes [R, 8]; background last in scores
    boxes = torch.tensor(
        [
            [0.0, 0.0, 10.0, 10.0, 0.0, 0.0, 10.0, 10.0],
            [1.0, 1.0, 11.0, 11.0, 50.0, 50.0, 70.0, 90.0],
        ]
    )
    scores = torch.tensor([[0.6, 0.1, 0.3], [0.5, 0.4, 0.1]])
    out = detections_from_scores(
        boxes, scores, (60, 80), score_thresh=0.2, nms_thresh=0.5, topk=100
    )
    # class 0: boxes 0 (0.6) and 1 (0.5) overlap with IoU 81/119 > 0.5 -> one kept; class 1: only
    # proposal 1 (0.4) passes; its box is clipped to the 60 x 80 image
    assert out["labels"].tolist() == [0, 1]
    torch.testing.assert_close(out["scores"], torch.tensor([0.6, 0.4]))
    torch.testing.assert_close(
        out["boxes"], torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 70.0, 60.0]])
    )


def test_topk_and_class_agnostic_boxes():
    boxes = torch.tensor([[0.0, 0.0, 5.0, 5.0], [20.0, 20.0, 30.0, 30.0]])
    scores = torch.tensor([[0.3, 0.6, 0.1], [0.2, 0.7, 0.1]])
    out = detections_from_scores(
        boxes, scores, (100, 100), score_thresh=0.0, nms_thresh=0.5, topk=3
    )
    assert out["scores"].tolist() == sorted(out["scores"].tolist(), reverse=True)
    torch.testing.assert_close(out["scores"], torch.tensor([0.7, 0.6, 0.3]))
    assert out["labels"].tolist() == [1, 1, 0]


def test_nonfinite_rows_dropped():
    boxes = torch.tensor([[0.0, 0.0, float("nan"), 5.0], [0.0, 0.0, 5.0, 5.0]])
    scores = torch.tensor([[0.9, 0.1], [0.8, 0.2]])
    out = detections_from_scores(boxes, scores, (10, 10), 0.05, 0.5, 100)
    torch.testing.assert_close(out["scores"], torch.tensor([0.8]))


def test_losses_hand_computed():
    torch.manual_seed(0)
    layer = FastRCNNOutputLayers(4, num_classes=2, box_coder=BoxCoder((1.0, 1.0, 1.0, 1.0)))
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    deltas = torch.zeros(2, 8)
    deltas[0, :4] = torch.tensor([0.1, 0.0, 0.0, 0.0])
    proposals = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    gt_boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 0.0, 0.0]])
    gt_classes = torch.tensor([0, 2])  # one foreground (class 0), one background
    losses = layer.losses((logits, deltas), proposals, gt_classes, gt_boxes)
    expected_cls = torch.nn.functional.cross_entropy(logits, gt_classes)
    torch.testing.assert_close(losses["loss_cls"], expected_cls)
    # L1 on the foreground's class-0 deltas vs zero target deltas, divided by 2 sampled proposals
    torch.testing.assert_close(losses["loss_box_reg"], torch.tensor(0.1 / 2))
