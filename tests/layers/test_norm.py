import pytest
import torch
from torch import nn

from detzoo.layers import Conv2d, FrozenBatchNorm2d, get_norm


def test_frozen_bn_is_the_affine_formula():
    bn = FrozenBatchNorm2d(3)
    bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
    bn.bias.copy_(torch.tensor([0.0, 1.0, -1.0]))
    bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
    bn.running_var.copy_(torch.tensor([4.0, 1.0, 0.25]))
    x = torch.randn(2, 3, 4, 5)
    scale = torch.tensor([1.0, 2.0, 0.5]) / torch.sqrt(torch.tensor([4.0, 1.0, 0.25]) + 1e-5)
    expected = (x - torch.tensor([0.5, -1.0, 2.0]).view(1, 3, 1, 1)) * scale.view(
        1, 3, 1, 1
    ) + torch.tensor([0.0, 1.0, -1.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(bn(x), expected)
    assert not list(bn.parameters())


def test_frozen_bn_default_is_identity_and_equals_eval_batchnorm():
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(FrozenBatchNorm2d(4)(x), x)
    bn = nn.BatchNorm2d(4)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 2)
        bn.bias.uniform_(-1, 1)
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    bn.eval()
    frozen = FrozenBatchNorm2d.convert(nn.Sequential(bn))[0]
    assert isinstance(frozen, FrozenBatchNorm2d)
    torch.testing.assert_close(frozen(x), bn(x))


def test_frozen_bn_loads_batchnorm_state_dicts():
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.5, -0.5, 2.0]))
        bn.bias.copy_(torch.tensor([0.25, 1.0, -3.0]))
        bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25, 9.0]))
    bn.num_batches_tracked.fill_(7)
    state = bn.state_dict()
    frozen = FrozenBatchNorm2d(3)
    result = frozen.load_state_dict(state)  # strict: num_batches_tracked is dropped, not unexpected
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert "num_batches_tracked" in state  # the caller's dict is left whole
    assert set(frozen.state_dict()) == {"weight", "bias", "running_mean", "running_var"}
    for name in ("weight", "bias", "running_mean", "running_var"):
        torch.testing.assert_close(frozen.state_dict()[name], state[name], rtol=0, atol=0)
    x = torch.randn(2, 3, 4, 5)
    torch.testing.assert_close(frozen(x), bn.eval()(x))
    # any other stray key still fails a strict load
    with pytest.raises(RuntimeError, match="Unexpected key.*momentum"):
        FrozenBatchNorm2d(3).load_state_dict({**state, "momentum": torch.tensor(0.1)})


def test_get_norm_names():
    assert get_norm("", 8) is None
    assert isinstance(get_norm("FrozenBN", 8), FrozenBatchNorm2d)
    assert type(get_norm("BN", 8)) is nn.BatchNorm2d
    assert type(get_norm("SyncBN", 8)) is nn.BatchNorm2d  # Lightning converts it when asked
    gn = get_norm("GN", 64)
    assert isinstance(gn, nn.GroupNorm) and gn.num_groups == 32
    with pytest.raises(ValueError, match="unknown norm 'LN'"):
        get_norm("LN", 8)


def test_conv_with_norm_and_activation_names_and_output():
    conv = Conv2d(2, 4, 1, bias=False, norm=FrozenBatchNorm2d(4), activation=nn.ReLU())
    assert set(conv.state_dict()) == {
        "weight",
        "norm.weight",
        "norm.bias",
        "norm.running_mean",
        "norm.running_var",
    }
    with torch.no_grad():
        conv.weight.fill_(-1.0)
    assert (conv(torch.ones(1, 2, 3, 3)) == 0).all()  # -2 after the conv, clipped by ReLU
