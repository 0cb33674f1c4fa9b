"""Conv2d with an optional norm and activation as submodules (Detectron2's ``layers.Conv2d``), so
parameters are named ``<conv>.weight`` and ``<conv>.norm.*`` as in Detectron2 checkpoints."""

from __future__ import annotations

import torch
from torch import nn

from detzoo.layers.norm import FrozenBatchNorm2d


class Conv2d(nn.Conv2d):
    """``nn.Conv2d`` followed by ``norm`` (if given) and ``activation`` (if given).

    A :class:`FrozenBatchNorm2d` norm is a fixed per-channel affine map, so where no gradient can
    reach the conv's weight (``torch.no_grad``/``inference_mode``, or a frozen weight) the conv
    runs with the norm folded into its weight and bias — ``conv(x, w·s) + (b·s + t)`` for the
    norm's ``y = x·s + t``: the same function, one pass over the feature map instead of two
    (rounding differs at float precision, ~1e-6 relative). The folded weight is cached and
    recomputed whenever the conv's or the norm's tensors change (in place, by ``load_state_dict``,
    or by ``.to()``); it is never saved in the state dict. A norm with forward hooks runs as its
    own module, so the hooks see its input and output.
    """

    def __init__(
        self, *args, norm: nn.Module | None = None, activation: nn.Module | None = None, **kwargs
    ):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation
        self._folded: tuple[tuple, torch.Tensor, torch.Tensor, list] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._can_fold():
            weight, bias = self._folded_weight_and_bias()
            x = self._conv_forward(x, weight, bias)
        else:
            x = super().forward(x)
            if self.norm is not None:
                x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x

    def _can_fold(self) -> bool:
        return (
            isinstance(self.norm, FrozenBatchNorm2d)
            and not (torch.is_grad_enabled() and self.weight.requires_grad)
            and not (self.norm._forward_pre_hooks or self.norm._forward_hooks)  # they must run
            and not torch.jit.is_scripting()
            and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling()
        )

    def _sources(self) -> list[torch.Tensor]:
        """Every tensor the folded weight and bias are made from."""
        norm = self.norm
        tensors = [self.weight, norm.weight, norm.bias, norm.running_mean, norm.running_var]
        return tensors if self.bias is None else [*tensors, self.bias]

    def _folded_weight_and_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        sources = self._sources()
        key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in sources)
        if self._folded is None or self._folded[0] != key:
            # normal tensors even under inference_mode: a frozen conv in training may use them
            with torch.inference_mode(False), torch.no_grad():
                scale, shift = self.norm.scale_and_shift()
                weight = self.weight * scale.view(-1, 1, 1, 1).to(self.weight.dtype)
                bias = shift if self.bias is None else self.bias * scale + shift
            # detached sources keep their storage alive, so no other tensor can take their address
            self._folded = (key, weight, bias.to(weight.dtype), [t.detach() for t in sources])
        return self._folded[1], self._folded[2]

    def _apply(self, fn, recurse=True):
        self._folded = None  # converted copies would be new tensors: fold them again when used
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args, **kwargs):
        self._folded = None
        super()._load_from_state_dict(*args, **kwargs)
