import json

import pytest
import torch

from detzoo.backbones import FPN, LastLevelMaxPool, LastLevelP6P7, ResNet
from detzoo.layers import FrozenBatchNorm2d


@pytest.mark.parametrize(
    ("depth", "channels"),
    [(18, [64, 128, 256, 512]), (34, [64, 128, 256, 512]), (50, [256, 512, 1024, 2048])],
)
def test_output_channels_and_strides(depth, channels):
    model = ResNet(depth, norm="BN", freeze_at=0)
    shapes = model.output_shape()
    assert [shapes[f].channels for f in ("res2", "res3", "res4", "res5")] == channels
    assert [shapes[f].stride for f in ("res2", "res3", "res4", "res5")] == [4, 8, 16, 32]
    out = model(torch.randn(1, 3, 64, 96))
    for name, spec in shapes.items():
        assert out[name].shape == (1, spec.channels, 64 // spec.stride, 96 // spec.stride)


def test_stride_in_1x1_places_the_stride():
    msra = ResNet(50, stride_in_1x1=True)
    tv = ResNet(50, stride_in_1x1=False)
    assert msra.res3[0].conv1.stride == (2, 2) and msra.res3[0].conv2.stride == (1, 1)
    assert tv.res3[0].conv1.stride == (1, 1) and tv.res3[0].conv2.stride == (2, 2)


def test_resnext_groups_and_widths():
    model = ResNet(50, num_groups=32, width_per_group=8, stride_in_1x1=False)
    conv2 = model.res2[0].conv2
    assert conv2.groups == 32 and conv2.weight.shape == (256, 8, 3, 3)
    assert model.res5[0].conv2.weight.shape == (2048, 64, 3, 3)


def test_dc5_keeps_res5_at_stride_16():
    model = ResNet(50, res5_dilation=2)
    assert model.output_shape()["res5"].stride == 16
    assert model.res5[0].conv2.dilation == (2, 2)
    assert model(torch.randn(1, 3, 64, 64))["res5"].shape[-1] == 4


@pytest.mark.parametrize("freeze_at", [0, 1, 2, 3, 5])
def test_freeze_at_freezes_exactly_the_first_stages(freeze_at):
    model = ResNet(50, norm="BN", freeze_at=freeze_at)
    parts = ["stem", "res2", "res3", "res4", "res5"]
    for i, name in enumerate(parts):
        module = getattr(model, name)
        frozen = i < freeze_at
        assert all(p.requires_grad != frozen for p in module.parameters()), name
        has_frozen_bn = any(isinstance(m, FrozenBatchNorm2d) for m in module.modules())
        assert has_frozen_bn == frozen, name


def test_c4_stops_after_res4_and_builds_res5_head():
    model = ResNet(50, out_features=["res4"])
    assert not hasattr(model, "res5")
    res5, channels = model.make_res5_head()
    assert channels == 2048
    assert res5(torch.randn(2, 1024, 14, 14)).shape == (2, 2048, 7, 7)


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        ResNet(42)
    with pytest.raises(ValueError, match="out_features"):
        ResNet(50, out_features=["res6"])


def _expected(golden_dir, name):
    path = golden_dir / name / "params.json"
    if not path.exists():
        path = golden_dir / "params_only" / f"{name}.json"
    params = json.loads(path.read_text())
    params = params.get("params", params)
    return {
        k: tuple(v["shape"] if isinstance(v, dict) else v)
        for k, v in params.items()
        if k.startswith("backbone.")
    }


def _fpn(resnet, top_block=None, in_features=("res2", "res3", "res4", "res5")):
    return FPN(resnet, in_features=list(in_features), top_block=top_block or LastLevelMaxPool())


BACKBONES = {
    "faster_rcnn_R50_FPN": lambda: _fpn(ResNet(50)),
    "faster_rcnn_R101_FPN": lambda: _fpn(ResNet(101)),
    "faster_rcnn_X101_32x8d_FPN": lambda: _fpn(
        ResNet(101, num_groups=32, width_per_group=8, stride_in_1x1=False)
    ),
    "faster_rcnn_R50_C4": lambda: ResNet(50, out_features=["res4"]),
    "faster_rcnn_R50_DC5": lambda: ResNet(50, out_features=["res5"], res5_dilation=2),
    "retinanet_R50_FPN": lambda: _fpn(
        ResNet(50, out_features=["res3", "res4", "res5"]),
        LastLevelP6P7(2048, 256),
        ("res3", "res4", "res5"),
    ),
    "retinanet_R101_FPN": lambda: _fpn(
        ResNet(101, out_features=["res3", "res4", "res5"]),
        LastLevelP6P7(2048, 256),
        ("res3", "res4", "res5"),
    ),
}


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_state_dict_matches_detectron2_names_and_shapes(golden_dir, name):
    """Every Detectron2 backbone parameter and buffer (FrozenBN statistics included) exists in
    detzoo under the same name with the same shape, and nothing else does."""
    expected = _expected(golden_dir, name)
    ours = {f"backbone.{k}": tuple(v.shape) for k, v in BACKBONES[name]().state_dict().items()}
    assert ours == expected
