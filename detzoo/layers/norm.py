"""Normalisation layers and the factory that picks one by name (Detectron2's ``get_norm``)."""

from __future__ import annotations

import torch
from torch import nn

from detzoo.config import Recordable


class FrozenBatchNorm2d(Recordable, nn.Module):
    """BatchNorm with fixed statistics and affine parameters: ``y = (x - mean) / sqrt(var + eps) * w + b``.

    All four are buffers (never trained), as in Detectron2, so ImageNet-pretrained backbones keep
    their statistics under the small per-GPU batches of detection training.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features) - eps)

    def scale_and_shift(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The per-channel affine map this layer is, ``y = x * scale + shift`` (both ``[C]``)."""
        scale = self.weight * (self.running_var + self.eps).rsqrt()
        return scale, self.bias - self.running_mean * scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale, bias = self.scale_and_shift()
        shape = (1, -1) + (1,) * (x.dim() - 2)
        # add_ into the fresh product: same values, one feature-map allocation instead of two
        return (x * scale.view(shape).to(x.dtype)).add_(bias.view(shape).to(x.dtype))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):  # fmt: skip
        state_dict.pop(prefix + "num_batches_tracked", None)  # from a BatchNorm2d checkpoint
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)  # fmt: skip

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}"

    @classmethod
    def convert(cls, module: nn.Module) -> nn.Module:
        """Returns ``module`` with every BatchNorm2d/SyncBatchNorm replaced by a frozen copy."""
        if isinstance(module, (nn.BatchNorm2d, nn.SyncBatchNorm)):
            frozen = cls(module.num_features, module.eps)
            if module.affine:
                frozen.weight.copy_(module.weight.detach())
                frozen.bias.copy_(module.bias.detach())
            if module.track_running_stats:
                frozen.running_mean.copy_(module.running_mean)
                frozen.running_var.copy_(module.running_var)
            return frozen
        for name, child in module.named_children():
            new = cls.convert(child)
            if new is not child:
                setattr(module, name, new)
        return module


NORMS = ("", "FrozenBN", "BN", "SyncBN", "GN")


def get_norm(name: str, channels: int) -> nn.Module | None:
    """A norm layer by Detectron2's names; ``""`` gives ``None`` (no norm).

    ``"SyncBN"`` gives a plain ``BatchNorm2d``: synchronising batch statistics across processes is
    the Trainer's job, never the model's: ``Trainer(plugins=[DetzooSyncBatchNorm()])``
    (:mod:`detzoo.layers.sync_norm`, any backend, uneven or empty per-rank batches) or
    ``Trainer(sync_batchnorm=True)`` (``torch.nn.SyncBatchNorm``, CUDA only). ``"GN"`` uses 32
    groups.
    """
    if name == "":
        return None
    if name == "FrozenBN":
        return FrozenBatchNorm2d(channels)
    if name in ("BN", "SyncBN"):
        return nn.BatchNorm2d(channels)
    if name == "GN":
        return nn.GroupNorm(32, channels)
    raise ValueError(f"unknown norm {name!r}; choose from {', '.join(repr(n) for n in NORMS)}")
