import math

import pytest
import torch

from detzoo.heads.box_coder import BoxCoder


def test_encode_hand_computed():
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    src = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # centre (5, 10), size 10 x 20
    tgt = torch.tensor([[2.0, 4.0, 22.0, 24.0]])  # centre (12, 14), size 20 x 20
    expected = torch.tensor([[10 * 7 / 10, 10 * 4 / 20, 5 * math.log(2.0), 5 * math.log(1.0)]])
    torch.testing.assert_close(coder.encode(src, tgt), expected)


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)])
def test_round_trip(weights):
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 2, generator=g, dtype=torch.float64) * 100
    src = torch.cat([xy, xy + 1 + torch.rand(50, 2, generator=g, dtype=torch.float64) * 50], 1)
    xy = torch.rand(50, 2, generator=g, dtype=torch.float64) * 100
    tgt = torch.cat([xy, xy + 1 + torch.rand(50, 2, generator=g, dtype=torch.float64) * 50], 1)
    coder = BoxCoder(weights)
    torch.testing.assert_close(coder.decode(coder.encode(src, tgt), src), tgt)


def test_decode_class_specific_and_clamp():
    coder = BoxCoder((1.0, 1.0, 1.0, 1.0), scale_clamp=math.log(4.0))
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    deltas = torch.tensor([[0.0, 0.0, 0.0, 0.0, 0.1, -0.2, 100.0, 0.0]])  # two classes
    out = coder.decode(deltas, boxes)
    assert out.shape == (1, 8)
    torch.testing.assert_close(out[0, :4], boxes[0])
    # class 2: centre moved by (1, -2); width clamped to exp(log 4) * 10 = 40
    torch.testing.assert_close(
        out[0, 4:], torch.tensor([6.0 - 20.0, 3.0 - 5.0, 6.0 + 20.0, 3.0 + 5.0])
    )


def test_weights_validated():
    with pytest.raises(ValueError, match="4 numbers"):
        BoxCoder((1.0, 1.0))
