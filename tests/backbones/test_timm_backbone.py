import pytest
import torch

from detzoo.backbones import FPN, LastLevelMaxPool, TimmBackbone


@pytest.mark.parametrize("name", ["resnet18", "convnext_nano", "efficientnet_b0", "regnetx_002"])
def test_timm_backbone_in_fpn_trains(name):
    body = TimmBackbone(name)
    info = body.body.feature_info
    shapes = body.output_shape()
    assert [s.channels for s in shapes.values()] == info.channels()  # read from timm, never typed
    assert [s.stride for s in shapes.values()] == info.reduction() == [4, 8, 16, 32]
    fpn = FPN(body, in_features=list(shapes), out_channels=32, top_block=LastLevelMaxPool())
    opt = torch.optim.SGD(fpn.parameters(), lr=0.01)
    x = torch.randn(2, 3, 64, 64)
    for _ in range(2):
        out = fpn(x)
        loss = sum(v.square().mean() for v in out.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert {k: v.shape[-1] for k, v in out.items()} == {
        "p2": 16,
        "p3": 8,
        "p4": 4,
        "p5": 2,
        "p6": 1,
    }


def test_frozen_and_out_indices():
    body = TimmBackbone("resnet18", out_indices=(3, 4), frozen=True)
    assert list(body.output_shape()) == ["res4", "res5"]
    assert not any(p.requires_grad for p in body.parameters())


def test_unknown_model_is_a_clear_error():
    with pytest.raises(Exception, match="not_a_model"):
        TimmBackbone("not_a_model")
