import torch

from detzoo.heads.anchors import AnchorGenerator
from detzoo.heads.rpn import RPN, RPNHead, flatten_dense_predictions, top_proposals


def test_flatten_order_matches_anchor_order():
    # logits [N=1, A=2, H=2, W=3] with value = 100*a + 10*h + w
    a, h, w = torch.meshgrid(torch.arange(2), torch.arange(2), torch.arange(3), indexing="ij")
    logits = (100 * a + 10 * h + w).float()[None]
    deltas = torch.arange(1 * 8 * 2 * 3, dtype=torch.float32).view(1, 8, 2, 3)
    flat_logits, flat_deltas = flatten_dense_predictions([logits], [deltas])
    # anchor order: (row, column, cell anchor)
    expected = [100 * ai + 10 * hi + wi for hi in range(2) for wi in range(3) for ai in range(2)]
    assert flat_logits[0][0].tolist() == expected
    assert flat_deltas[0].shape == (1, 12, 4)
    # anchor (h=1, w=2, a=1): deltas channels 4..7 at that cell
    torch.testing.assert_close(flat_deltas[0][0, (1 * 3 + 2) * 2 + 1], deltas[0, 4:8, 1, 2])


def test_top_proposals_per_level_topk_clip_and_nms():
    boxes_l0 = torch.tensor(
        [[[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [-5.0, -5.0, 50.0, 8.0]]]
    )
    logits_l0 = torch.tensor([[3.0, 2.0, 1.0]])
    boxes_l1 = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [30.0, 30.0, 30.0, 40.0]]])
    logits_l1 = torch.tensor([[0.5, 5.0]])
    out = top_proposals(
        [boxes_l0, boxes_l1],
        [logits_l0, logits_l1],
        [(20, 40)],
        nms_thresh=0.7,
        pre_nms_topk=2,
        post_nms_topk=10,
        min_box_size=0.0,
        training=False,
    )[0]
    # level 0 keeps its top-2 (3.0, 2.0) and NMS removes the second (IoU 0.81);
    # level 1: the 5.0 box is clipped to zero width (x1 = x2 = 30) -> dropped; 0.5 survives
    # (NMS is per level, so it does not suppress level 0's identical box)
    torch.testing.assert_close(out["objectness_logits"], torch.tensor([3.0, 0.5]))
    torch.testing.assert_close(
        out["boxes"], torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    )


def test_rpn_losses_and_proposals_shapes():
    torch.manual_seed(0)
    anchors = AnchorGenerator([[16], [32]], [[0.5, 1.0, 2.0]], [4, 8])
    rpn = RPN(["p2", "p3"], RPNHead(8, 3), anchors, pre_nms_topk=(50, 50), post_nms_topk=(20, 20))
    feats = {"p2": torch.randn(2, 8, 8, 8), "p3": torch.randn(2, 8, 4, 4)}
    rpn.train()
    gt = [torch.tensor([[4.0, 4.0, 20.0, 20.0]]), torch.zeros(0, 4)]
    proposals, losses = rpn(feats, [(32, 32), (30, 28)], gt)
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc"}
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss_rpn_cls"].backward()
    assert rpn.rpn_head.objectness_logits.weight.grad is not None
    assert len(proposals) == 2 and proposals[0]["boxes"].shape[1] == 4
    assert (proposals[1]["boxes"][:, 2] <= 28).all() and (proposals[1]["boxes"][:, 3] <= 30).all()
    labels, _ = rpn.label_anchors(torch.cat(anchors([feats["p2"], feats["p3"]])), gt)
    assert (labels[1] != 1).all()  # no ground truth -> no positives
    assert (labels[0] == 1).any() and (labels >= 0).sum(1).max() <= rpn.batch_size_per_image
