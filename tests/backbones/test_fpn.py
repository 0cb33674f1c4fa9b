import pytest
import torch
import torch.nn.functional as F
from torch import nn

from detzoo.backbones import FPN, Backbone, LastLevelMaxPool, LastLevelP6P7, ShapeSpec


class _Constant(Backbone):
    """Two 1-channel levels (strides 4 and 8) filled with given constants."""

    def __init__(self, a: float, b: float):
        super().__init__()
        self.a, self.b = a, b

    def output_shape(self):
        return {"c2": ShapeSpec(1, 4), "c3": ShapeSpec(1, 8)}

    def forward(self, x):
        n, _, h, w = x.shape
        return {
            "c2": torch.full((n, 1, h // 4, w // 4), self.a),
            "c3": torch.full((n, 1, h // 8, w // 8), self.b),
        }


def _identity_convs(fpn: FPN) -> None:
    with torch.no_grad():
        for conv in fpn.lateral_convs:
            conv.weight.fill_(1.0)
            conv.bias.zero_()
        for conv in fpn.output_convs:
            conv.weight.zero_()
            conv.weight[0, 0, 1, 1] = 1.0
            conv.bias.zero_()


@pytest.mark.parametrize(("fuse", "expected_p2"), [("sum", 5.0), ("avg", 2.5)])
def test_top_down_sum_hand_computed(fuse, expected_p2):
    fpn = FPN(_Constant(2.0, 3.0), in_features=["c2", "c3"], out_channels=1, fuse_type=fuse)
    _identity_convs(fpn)
    out = fpn(torch.zeros(1, 3, 32, 32))
    assert set(out) == {"p2", "p3"}
    assert (out["p3"] == 3.0).all()
    assert torch.allclose(out["p2"], torch.full_like(out["p2"], expected_p2))


def test_last_level_maxpool_subsamples_p5():
    p5 = torch.randn(1, 2, 6, 8)
    (p6,) = LastLevelMaxPool()(p5)
    torch.testing.assert_close(p6, p5[..., ::2, ::2])


def test_p6p7_shapes_and_relu():
    block = LastLevelP6P7(4, 3)
    x = torch.randn(1, 4, 16, 16)
    p6, p7 = block(x)
    assert p6.shape == (1, 3, 8, 8) and p7.shape == (1, 3, 4, 4)
    torch.testing.assert_close(p7, block.p7(F.relu(p6)))


def test_names_strides_and_divisibility():
    fpn = FPN(
        _Constant(1, 1), in_features=["c2", "c3"], out_channels=2, top_block=LastLevelMaxPool()
    )
    assert {n: s.stride for n, s in fpn.output_shape().items()} == {"p2": 4, "p3": 8, "p4": 16}
    assert fpn.size_divisibility == 8  # the coarsest input level, as Detectron2
    assert isinstance(fpn.fpn_lateral2, nn.Conv2d) and isinstance(fpn.fpn_output3, nn.Conv2d)


def test_bad_in_features():
    with pytest.raises(ValueError, match="not outputs"):
        FPN(_Constant(1, 1), in_features=["c2", "c9"])
    with pytest.raises(ValueError, match="fuse_type"):
        FPN(_Constant(1, 1), in_features=["c2", "c3"], fuse_type="max")
