"""ImageNet-pretrained ResNet checkpoints → detzoo ResNet state dicts, for fine-tuning.

Two sources are understood:

- the MSRA/caffe2 pickles of Detectron (``R-50.pkl``, ``X-101-32x8d.pkl``): names like
  ``res2_0_branch2a_w`` / ``res_conv1_bn_s``; batch norms stored folded into a scale and bias
  (no running statistics: they become mean 0 / variance 1, as Detectron2 does);
- torchvision's ImageNet ResNet/ResNeXt checkpoints (``resnet50-*.pth``): ``layer1.0.conv1.weight``,
  ``bn1.running_mean``, ``downsample.0``.

Both map onto detzoo's ResNet names (Detectron2's: ``stem.conv1``, ``res2.0.conv1.norm``,
``res2.0.shortcut``); the ImageNet classifier (``fc1000`` / ``fc``) is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

_C2_RULES = [
    (r"_", "."),
    (r"\.w$", ".weight"),
    (r"\.b$", ".bias"),
    (r"bn\.s$", "norm.weight"),
    (r"bn\.bias$", "norm.bias"),
    (r"gn\.s$", "norm.weight"),
    (r"gn\.bias$", "norm.bias"),
    (r"bn\.rm$", "norm.running_mean"),
    (r"bn\.riv$", "norm.running_var"),
    (r"^res\.conv1\.norm\.", "stem.conv1.norm."),
    (r"^conv1\.", "stem.conv1."),
    (r"\.branch1\.", ".shortcut."),
    (r"\.branch2a\.", ".conv1."),
    (r"\.branch2b\.", ".conv2."),
    (r"\.branch2c\.", ".conv3."),
]
_C2_CLASSIFIER = re.compile(r"^(fc1000|pred)_")

_TORCHVISION_RULES = [
    (r"^conv1\.", "stem.conv1."),
    (r"^bn1\.", "stem.conv1.norm."),
    (r"^layer(\d)\.", lambda m: f"res{int(m.group(1)) + 1}."),
    (r"\.bn(\d)\.", r".conv\1.norm."),
    (r"\.downsample\.0\.", ".shortcut."),
    (r"\.downsample\.1\.", ".shortcut.norm."),
]


def _apply(name: str, rules) -> str:
    for pattern, repl in rules:
        name = re.sub(pattern, repl, name)
    return name


def convert_c2_imagenet(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detectron/caffe2 ImageNet names → detzoo ResNet names; fills missing running statistics
    of folded batch norms with mean 0 and variance 1."""
    out: dict[str, torch.Tensor] = {}
    for name, value in weights.items():
        if _C2_CLASSIFIER.match(name) or name.endswith("_momentum"):
            continue
        out[_apply(name, _C2_RULES)] = value
    for name in [k for k in out if k.endswith("norm.weight")]:
        prefix = name[: -len("weight")]
        out.setdefault(prefix + "running_mean", torch.zeros_like(out[name]))
        out.setdefault(prefix + "running_var", torch.ones_like(out[name]))
    return out


def convert_torchvision_imagenet(weights: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision ImageNet ResNet names → detzoo ResNet names (``fc`` and BN step counters dropped)."""
    return {
        _apply(name, _TORCHVISION_RULES): value
        for name, value in weights.items()
        if not name.startswith("fc.") and not name.endswith("num_batches_tracked")
    }


def is_c2_imagenet(weights: Mapping[str, torch.Tensor]) -> bool:
    return any(k.startswith(("res2_", "res_conv1_")) for k in weights)


def is_torchvision_imagenet(weights: Mapping[str, torch.Tensor]) -> bool:
    return "conv1.weight" in weights and any(k.startswith("layer1.") for k in weights)
