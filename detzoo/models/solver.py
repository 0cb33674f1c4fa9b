"""Optimiser and learning-rate schedule of a training recipe (Detectron2's SOLVER section)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch import nn

from detzoo.config import Recordable

_NORM_TYPES = (
    nn.BatchNorm1d,
    nn.BatchNorm2d,
    nn.BatchNorm3d,
    nn.SyncBatchNorm,
    nn.GroupNorm,
    nn.InstanceNorm2d,
    nn.LayerNorm,
    nn.LocalResponseNorm,
)


def _is_norm(module: nn.Module) -> bool:
    # FrozenBatchNorm2d has no parameters, so it never reaches here; timm/torch norms by type or name
    return isinstance(module, _NORM_TYPES) or "norm" in type(module).__name__.lower()


class Solver(Recordable):
    """SGD (momentum) or AdamW with linear warm-up and a multi-step or cosine decay, per iteration.

    Args:
        optimizer: ``"sgd"`` or ``"adamw"``.
        lr: base learning rate (Detectron2: 0.02 for batch 16).
        momentum: SGD momentum; betas: AdamW betas.
        weight_decay: for weights; weight_decay_norm: for norm-layer parameters;
            weight_decay_bias: for biases (``None``: same as ``weight_decay``).
        bias_lr_factor: learning-rate multiplier for biases.
        warmup_iters, warmup_factor: linear warm-up from ``lr * warmup_factor`` over the first iterations.
        schedule: ``"multistep"`` (×``gamma`` at each of ``steps``) or ``"cosine"`` (to 0 at ``max_iters``).
        steps: iterations at which the multistep schedule decays; max_iters: schedule length.
        gamma: decay factor of the multistep schedule.
    """

    def __init__(
        self,
        optimizer: str = "sgd",
        lr: float = 0.02,
        momentum: float = 0.9,
        betas: Sequence[float] = (0.9, 0.999),
        weight_decay: float = 1e-4,
        weight_decay_norm: float = 0.0,
        weight_decay_bias: float | None = None,
        bias_lr_factor: float = 1.0,
        warmup_iters: int = 1000,
        warmup_factor: float = 0.001,
        schedule: str = "multistep",
        steps: Sequence[int] = (60000, 80000),
        max_iters: int = 90000,
        gamma: float = 0.1,
    ):
        if optimizer not in ("sgd", "adamw"):
            raise ValueError(f"unknown optimizer {optimizer!r}; choose 'sgd' or 'adamw'")
        if schedule not in ("multistep", "cosine"):
            raise ValueError(f"unknown schedule {schedule!r}; choose 'multistep' or 'cosine'")
        if list(steps) != sorted(steps):
            raise ValueError(f"solver steps must be increasing, got {list(steps)}")
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.betas = tuple(betas)
        self.weight_decay = weight_decay
        self.weight_decay_norm = weight_decay_norm
        self.weight_decay_bias = weight_decay if weight_decay_bias is None else weight_decay_bias
        self.bias_lr_factor = bias_lr_factor
        self.warmup_iters = warmup_iters
        self.warmup_factor = warmup_factor
        self.schedule = schedule
        self.steps = list(steps)
        self.max_iters = max_iters
        self.gamma = gamma

    def param_groups(self, model: nn.Module) -> list[dict]:
        """One group per trainable parameter with its weight decay and learning rate."""
        groups, seen = [], set()
        modules: Iterator[tuple[str, nn.Module]] = model.named_modules()
        for _, module in modules:
            for name, param in module.named_parameters(recurse=False):
                if not param.requires_grad or id(param) in seen:
                    continue
                seen.add(id(param))
                lr, wd = self.lr, self.weight_decay
                if _is_norm(module):
                    wd = self.weight_decay_norm
                elif name == "bias":
                    wd = self.weight_decay_bias
                    lr = self.lr * self.bias_lr_factor
                groups.append({"params": [param], "lr": lr, "weight_decay": wd})
        return groups

    def lr_factor(self, iteration: int) -> float:
        """Multiplier of each group's learning rate at ``iteration`` (warm-up × decay)."""
        if self.schedule == "multistep":
            decay = self.gamma ** sum(1 for s in self.steps if s <= iteration)
        else:
            decay = 0.5 * (
                1.0 + math.cos(math.pi * min(iteration, self.max_iters) / self.max_iters)
            )
        if iteration < self.warmup_iters:
            alpha = iteration / self.warmup_iters
            decay *= self.warmup_factor * (1 - alpha) + alpha
        return decay

    def build(
        self, model: nn.Module
    ) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
        """The optimiser over ``model``'s trainable parameters and its per-iteration scheduler."""
        groups = self.param_groups(model)
        if self.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=self.lr, momentum=self.momentum)
        else:
            opt = torch.optim.AdamW(groups, lr=self.lr, betas=self.betas)
        return opt, torch.optim.lr_scheduler.LambdaLR(opt, self.lr_factor)
