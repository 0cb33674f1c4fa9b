"""RetinaNet decoding: the candidates found from the logits are Detectron2's (sigmoid of every
(anchor, class) pair, threshold, top-k)."""

import pytest
import torch
from torchvision.ops import batched_nms

from detzoo.heads.retinanet import RetinaNetOutputs


def _detectron2_candidates(logits: torch.Tensor, thresh: float, k: int):
    """Detectron2's ``RetinaNet._decode_per_level_predictions`` candidate selection."""
    scores = logits.flatten().sigmoid()
    keep = scores > thresh
    scores, idx = scores[keep], torch.nonzero(keep, as_tuple=True)[0]
    scores, order = scores.topk(min(len(idx), k))
    return scores, idx[order]


def _level(num_anchors: int, num_classes: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    anchors = torch.rand(num_anchors, 2, generator=g) * 200
    anchors = torch.cat([anchors, anchors + 8 + torch.rand(num_anchors, 2, generator=g) * 50], 1)
    logits = torch.randn(num_anchors, num_classes, generator=g) * 3 - 2
    deltas = torch.randn(num_anchors, 4, generator=g) * 0.1
    return anchors, logits, deltas


@pytest.mark.parametrize("thresh", [0.0, 0.05, 0.5, 0.999])
@pytest.mark.parametrize("k", [5, 100, 10_000])
def test_candidates_and_detections_equal_detectron2s(thresh, k):
    outputs = RetinaNetOutputs(
        num_classes=4, score_thresh=thresh, topk_candidates=k, detections_per_image=10_000
    )
    levels = [_level(300, 4, seed) for seed in (0, 1)]
    found = outputs.inference(*zip(*levels))
    expected_scores, expected_boxes, expected_labels = [], [], []
    for anchors, logits, deltas in levels:
        scores, idx = _detectron2_candidates(logits, thresh, k)
        anchor_idx = idx // 4
        expected_scores.append(scores)
        expected_boxes.append(outputs.box_coder.decode(deltas[anchor_idx], anchors[anchor_idx]))
        expected_labels.append(idx % 4)
    scores, boxes, labels = map(torch.cat, (expected_scores, expected_boxes, expected_labels))
    keep = batched_nms(boxes, scores, labels, outputs.nms_thresh)
    order = lambda d: torch.argsort(d["scores"] * 10 + d["labels"], descending=True)  # noqa: E731
    expected = {"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]}
    assert len(found["scores"]) == len(expected["scores"])
    for key in ("boxes", "scores", "labels"):
        torch.testing.assert_close(found[key][order(found)], expected[key][order(expected)])
    if thresh == 0.999:
        assert len(found["scores"]) < min(k, 2400)  # the threshold, not k, bounded the count


def test_saturated_and_underflowing_scores_are_handled_like_detectron2():
    # sigmoid(40) == 1 and sigmoid(-120) == 0 in float32: the zero scores fail "> 0"
    logits = torch.tensor([[40.0, -120.0], [-120.0, 3.0]])
    anchors = torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0]])
    outputs = RetinaNetOutputs(num_classes=2, score_thresh=0.0, topk_candidates=4)
    found = outputs.inference([anchors], [logits], [torch.zeros(2, 4)])
    assert found["labels"].tolist() == [0, 1] and found["scores"][0] == 1.0
    torch.testing.assert_close(found["boxes"], anchors)
