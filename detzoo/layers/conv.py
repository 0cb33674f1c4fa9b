"""Conv2d with an optional norm and activation as submodules (Detectron2's ``layers.Conv2d``), so
parameters are named ``<conv>.weight`` and ``<conv>.norm.*`` as in Detectron2 checkpoints."""

from __future__ import annotations

import torch
from torch import nn

from detzoo.layers.norm import FrozenBatchNorm2d
from detzoo.layers.winograd import nnpack_ready, winograd_conv2d, winograd_plan


def _no_autograd(*tensors: torch.Tensor | None) -> bool:
    return not torch.is_grad_enabled() or not any(
        t is not None and t.requires_grad for t in tensors
    )


def _traced() -> bool:
    return torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling()


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

    On CPU, a float32 3×3 stride-1 convolution runs through torch's NNPACK backend (Winograd)
    where :func:`~detzoo.layers.winograd.winograd_plan` finds it faster than oneDNN's (wide
    convolutions on large maps, or on many ROIs), forward and, in training, backward: the same
    convolution, ~2× faster there, rounding different at ~1e-5 of the output's magnitude.
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
            and _no_autograd(self.weight)
            and not (self.norm._forward_pre_hooks or self.norm._forward_hooks)  # they must run
            and not _traced()
        )

    def _winograd_plan(
        self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> str | None:
        applies = (
            self.kernel_size == (3, 3)
            and self.stride == (1, 1)
            and self.dilation == (1, 1)
            and self.groups == 1
            and self.padding_mode == "zeros"
            and isinstance(self.padding, tuple)
            and all(p < 3 for p in self.padding)
            and x.dim() == 4
            and x.is_contiguous()
            and x.device.type == "cpu"
            and x.dtype == weight.dtype == torch.float32
            and (bias is None or bias.dtype == torch.float32)
            and not torch.is_autocast_enabled("cpu")
            and not _traced()
            and nnpack_ready()
        )
        return winograd_plan(x) if applies else None

    def _conv_forward(
        self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        plan = self._winograd_plan(input, weight, bias)
        if plan is not None:
            return winograd_conv2d(input, weight, bias, list(self.padding), plan)
        return super()._conv_forward(input, weight, bias)

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
