import torch

from detzoo.zoo.imagenet import (
    convert_c2_imagenet,
    convert_torchvision_imagenet,
    is_c2_imagenet,
    is_torchvision_imagenet,
)


def test_c2_names_hand_mapped():
    w = {
        "conv1_w": torch.zeros(64, 3, 7, 7),
        "res_conv1_bn_s": torch.full((64,), 2.0),
        "res_conv1_bn_b": torch.zeros(64),
        "res2_0_branch1_w": torch.zeros(256, 64, 1, 1),
        "res2_0_branch1_bn_s": torch.ones(256),
        "res2_0_branch1_bn_b": torch.ones(256),
        "res2_0_branch2a_w": torch.zeros(64, 64, 1, 1),
        "res3_1_branch2c_bn_s": torch.ones(512),
        "res5_2_branch2b_w": torch.zeros(512, 512, 3, 3),
        "fc1000_w": torch.zeros(1000, 2048),
        "fc1000_b": torch.zeros(1000),
    }
    assert is_c2_imagenet(w) and not is_torchvision_imagenet(w)
    out = convert_c2_imagenet(w)
    assert set(out) == {
        "stem.conv1.weight",
        "stem.conv1.norm.weight",
        "stem.conv1.norm.bias",
        "stem.conv1.norm.running_mean",
        "stem.conv1.norm.running_var",
        "res2.0.shortcut.weight",
        "res2.0.shortcut.norm.weight",
        "res2.0.shortcut.norm.bias",
        "res2.0.shortcut.norm.running_mean",
        "res2.0.shortcut.norm.running_var",
        "res2.0.conv1.weight",
        "res3.1.conv3.norm.weight",
        "res3.1.conv3.norm.running_mean",
        "res3.1.conv3.norm.running_var",
        "res5.2.conv2.weight",
    }
    assert (out["stem.conv1.norm.weight"] == 2.0).all()
    assert (out["stem.conv1.norm.running_var"] == 1.0).all()
    assert (out["stem.conv1.norm.running_mean"] == 0.0).all()


def test_torchvision_names_hand_mapped():
    w = {
        "conv1.weight": torch.zeros(1),
        "bn1.running_var": torch.zeros(1),
        "bn1.num_batches_tracked": torch.zeros(()),
        "layer1.0.conv1.weight": torch.zeros(1),
        "layer1.0.bn1.weight": torch.zeros(1),
        "layer2.0.downsample.0.weight": torch.zeros(1),
        "layer2.0.downsample.1.bias": torch.zeros(1),
        "layer4.2.bn3.running_mean": torch.zeros(1),
        "fc.weight": torch.zeros(1),
    }
    assert is_torchvision_imagenet(w) and not is_c2_imagenet(w)
    assert set(convert_torchvision_imagenet(w)) == {
        "stem.conv1.weight",
        "stem.conv1.norm.running_var",
        "res2.0.conv1.weight",
        "res2.0.conv1.norm.weight",
        "res3.0.shortcut.weight",
        "res3.0.shortcut.norm.bias",
        "res5.2.conv3.norm.running_mean",
    }
