"""Caffe2-style weight initialisations used by Detectron2 (so from-scratch training matches)."""

from __future__ import annotations

from torch import nn


def c2_msra_fill(module: nn.Module) -> None:
    """Kaiming-normal (fan_out, ReLU) weights and zero bias."""
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)


def c2_xavier_fill(module: nn.Module) -> None:
    """Caffe2's "XavierFill": uniform in ±sqrt(3 / fan_in), zero bias."""
    nn.init.kaiming_uniform_(module.weight, a=1)
    if module.bias is not None:
        nn.init.constant_(module.bias, 0)
