"""Synchronised BatchNorm for any backend, and the Lightning plugin that swaps it in.

:class:`NaiveSyncBatchNorm` is Detectron2's ``NaiveSyncBatchNorm`` with ``stats_mode="N"``: in
training, the per-channel sum, sum of squares and element count are all-reduced over the process
group, so the normalisation uses the statistics of the *global* batch even when ranks hold
different numbers of images, or none. It is written here (rather than using
``torch.nn.SyncBatchNorm``) because ``nn.SyncBatchNorm`` runs only on GPUs (CUDA kernels), while
this one runs wherever ``torch.distributed`` does, gloo on CPU included.

:class:`DetzooSyncBatchNorm` is the Lightning ``LayerSync`` plugin that converts a model's
BatchNorm layers to :class:`NaiveSyncBatchNorm` while fitting (and back afterwards)::

    L.Trainer(strategy="ddp", plugins=[DetzooSyncBatchNorm()])

Models never contain sync code themselves (DESIGN.md): ``get_norm("SyncBN")`` builds a plain
``BatchNorm2d`` and the Trainer synchronises it when asked.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from lightning.pytorch.plugins import TorchSyncBatchNorm
from torch import nn
from torch.autograd.function import FunctionCtx

from detzoo.layers.norm import FrozenBatchNorm2d

#: the BatchNorm classes :meth:`NaiveSyncBatchNorm.convert` replaces (and their subclasses)
CONVERTIBLE = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

_ORIGINAL_CLASS_ATTR = "_detzoo_sync_original_class"


class _DifferentiableAllReduce(torch.autograd.Function):
    """Sum over the ranks of ``group``; the gradient is summed over ranks too (every rank's loss
    depends on the sum). Written here because ``torch.distributed.nn.functional.all_reduce`` is
    deprecated and warns on every call."""

    @staticmethod
    def forward(ctx: FunctionCtx, tensor: torch.Tensor, group) -> torch.Tensor:
        ctx.group = group
        tensor = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM, group=group)
        return tensor

    @staticmethod
    def backward(ctx: FunctionCtx, grad: torch.Tensor):
        return _DifferentiableAllReduce.apply(grad, ctx.group), None


def _world_size(group) -> int:
    if not (dist.is_available() and dist.is_initialized()):
        return 1
    return dist.get_world_size(group)


class NaiveSyncBatchNorm(nn.BatchNorm2d):
    """BatchNorm whose training statistics are those of the batch of all ranks together.

    In training (or whenever batch statistics are used) with a process group of more than one
    rank, each rank computes, per channel, its element count ``n_r``, sum and sum of squares (from
    a numerically stable local mean/variance), these are summed over ranks in float64 by one
    differentiable all-reduce, and the input is normalised with the global mean and biased
    variance. The running statistics are updated as ``nn.BatchNorm`` does, with the global mean and
    the *unbiased* global variance. So N ranks equal one process holding the concatenated batch,
    outputs, running statistics and gradients alike (Detectron2's ``stats_mode="N"``). Ranks may
    hold different numbers of images, different spatial sizes, or an empty batch (which then
    contributes nothing; if all ranks are empty the running statistics are left unchanged).

    Out of training, or without an initialised process group of >1 ranks, it is ``BatchNorm2d``.

    Every rank must call ``forward`` of each such layer in each training step (it is a collective),
    also with an empty batch; a model must not skip a layer on a rank that has nothing to process.

    Args:
        num_features, eps, momentum, affine, track_running_stats: as ``nn.BatchNorm2d``.
        process_group: the ranks to synchronise over; ``None``: all of them.

    Shapes: input and output ``[N, C, *]`` (``N`` may be 0); any number of trailing dims, so it
    also replaces ``BatchNorm1d``/``BatchNorm3d``. Statistics are computed in float32 (or
    float64 input's float64) and the output has the input's dtype (bf16/fp16 under autocast).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        process_group: dist.ProcessGroup | None = None,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.process_group = process_group

    def _check_input_dim(self, input: torch.Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected an input of shape [N, C, *], got {tuple(input.shape)}")

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        uses_batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        group = self.process_group if self.process_group is not None else dist.group.WORLD
        if not uses_batch_stats or _world_size(group) == 1:
            return super().forward(input)
        with torch.autocast(input.device.type, enabled=False):
            return self._synchronised_forward(input, group)

    def _synchronised_forward(self, input: torch.Tensor, group) -> torch.Tensor:
        channels = input.shape[1]
        if input.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}({self.num_features}) got an input with {channels} channels"
            )
        compute_dtype = torch.float64 if input.dtype == torch.float64 else torch.float32
        x = input.to(compute_dtype)
        reduce_dims = [0, *range(2, x.dim())]
        count = x.numel() // channels if channels else 0
        if count > 0:
            var, mean = torch.var_mean(x, dim=reduce_dims, correction=0)
            mean, var = mean.double(), var.double()
            ones = torch.ones(1, dtype=torch.float64, device=x.device)
            local = torch.cat([mean * count, (var + mean * mean) * count, ones * count])
        else:
            # Nothing here; x.sum() (= 0) keeps the graph connected to the input, so this rank
            # also takes part in the backward all-reduce (it is a collective).
            local = torch.zeros(2 * channels + 1, dtype=torch.float64, device=x.device)
            local = local + x.sum().double()
        total = _DifferentiableAllReduce.apply(local, group)
        total_count = total[-1].detach()
        denominator = total_count.clamp(min=1)
        global_mean = total[:channels] / denominator
        global_var = (total[channels : 2 * channels] / denominator - global_mean**2).clamp(min=0)

        if self.training and self.track_running_stats:
            self._update_running_stats(global_mean.detach(), global_var.detach(), total_count)

        mean32, var32 = global_mean.to(compute_dtype), global_var.to(compute_dtype)
        scale = torch.rsqrt(var32 + self.eps)
        if self.weight is not None:
            scale = scale * self.weight.to(compute_dtype)
        shift = -mean32 * scale
        if self.bias is not None:
            shift = shift + self.bias.to(compute_dtype)
        shape = (1, channels) + (1,) * (x.dim() - 2)
        return (x * scale.view(shape) + shift.view(shape)).to(input.dtype)

    @torch.no_grad()
    def _update_running_stats(
        self, mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor
    ) -> None:
        """``nn.BatchNorm``'s update (the unbiased variance; a cumulative average when
        ``momentum`` is None), skipped when the global batch is empty."""
        self.num_batches_tracked.add_(1)
        if self.momentum is None:
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            factor = self.momentum
        factor = factor * (count > 0).to(mean.dtype)
        unbiased = var * count / (count - 1).clamp(min=1)
        dtype = self.running_mean.dtype
        self.running_mean.add_((factor * (mean - self.running_mean)).to(dtype))
        self.running_var.add_((factor * (unbiased - self.running_var)).to(dtype))

    def extra_repr(self) -> str:
        return super().extra_repr() + ", synchronised"

    @classmethod
    def convert(
        cls, module: nn.Module, process_group: dist.ProcessGroup | None = None
    ) -> nn.Module:
        """``module`` with every ``nn.BatchNorm1d/2d/3d`` (subclasses included, but not detzoo's
        :class:`FrozenBatchNorm2d` nor an existing ``NaiveSyncBatchNorm``) replaced by a
        ``NaiveSyncBatchNorm`` that shares its parameters and buffers (same tensor objects, so
        optimisers and devices are unaffected) and remembers the original class for
        :meth:`revert`. Converts in place where it can; returns the (new, if ``module`` itself was
        a BatchNorm) root."""
        if isinstance(module, CONVERTIBLE) and not isinstance(module, (cls, FrozenBatchNorm2d)):
            synced = cls(
                module.num_features,
                module.eps,
                module.momentum,
                module.affine,
                module.track_running_stats,
                process_group=process_group,
                device="meta",
            )
            _share_state(module, synced)
            setattr(synced, _ORIGINAL_CLASS_ATTR, type(module))
            return synced
        for name, child in module.named_children():
            new = cls.convert(child, process_group)
            if new is not child:
                setattr(module, name, new)
        return module

    @classmethod
    def revert(cls, module: nn.Module) -> nn.Module:
        """Undoes :meth:`convert`: each ``NaiveSyncBatchNorm`` it made becomes an instance of its
        original class again, with the current parameters and buffers. Ones built directly stay."""
        original = getattr(module, _ORIGINAL_CLASS_ATTR, None)
        if isinstance(module, cls) and original is not None:
            try:
                plain = original(
                    module.num_features,
                    module.eps,
                    module.momentum,
                    module.affine,
                    module.track_running_stats,
                    device="meta",
                )
            except TypeError:  # a subclass with its own signature: the standard class
                plain = nn.BatchNorm2d(
                    module.num_features,
                    module.eps,
                    module.momentum,
                    module.affine,
                    module.track_running_stats,
                    device="meta",
                )
            _share_state(module, plain)
            return plain
        for name, child in module.named_children():
            new = cls.revert(child)
            if new is not child:
                setattr(module, name, new)
        return module


def _share_state(source: nn.Module, target: nn.Module) -> None:
    """Makes ``target`` use ``source``'s parameters, buffers, mode and quantisation config."""
    for name, param in source._parameters.items():
        target._parameters[name] = param
    for name, buffer in source._buffers.items():
        target._buffers[name] = buffer
    target._non_persistent_buffers_set = set(source._non_persistent_buffers_set)
    for name, child in source.named_children():
        target.add_module(name, child)
    target.train(source.training)
    if hasattr(source, "qconfig"):
        target.qconfig = source.qconfig


class DetzooSyncBatchNorm(TorchSyncBatchNorm):
    """Lightning plugin: synchronised BatchNorm (:class:`NaiveSyncBatchNorm`) while fitting under
    DDP, on CPU (gloo) as on GPU (NCCL); detzoo's :class:`FrozenBatchNorm2d` is left as it is.

    Usage::

        trainer = L.Trainer(strategy="ddp", devices=8, plugins=[DetzooSyncBatchNorm()])
        # equivalently (accepted because this subclasses Lightning's TorchSyncBatchNorm):
        trainer = L.Trainer(strategy="ddp", devices=8, sync_batchnorm=True,
                            plugins=[DetzooSyncBatchNorm()])

    or in a LightningCLI YAML: ``trainer: {plugins: [{class_path:
    detzoo.layers.DetzooSyncBatchNorm}]}``. ``Trainer(sync_batchnorm=True)`` alone uses
    ``torch.nn.SyncBatchNorm`` instead, which needs CUDA.

    Lightning's DDP/FSDP strategies call :meth:`apply` in ``setup`` when fitting (before moving
    the model to its device, wrapping it in DDP and building the optimisers) and :meth:`revert`
    in ``teardown`` after fitting; single-device strategies never call them. Validation inside
    ``fit`` runs the converted layers in eval mode, which is plain BatchNorm.

    Args:
        process_group: the ranks to synchronise over; ``None``: all of them.
    """

    def __init__(self, process_group: dist.ProcessGroup | None = None) -> None:
        super().__init__()
        self.process_group = process_group

    def apply(self, model: nn.Module) -> nn.Module:
        """Converts every BatchNorm of ``model`` (see :meth:`NaiveSyncBatchNorm.convert`)."""
        return NaiveSyncBatchNorm.convert(model, self.process_group)

    def revert(self, model: nn.Module) -> nn.Module:
        """Restores the layers :meth:`apply` converted to their original classes."""
        return NaiveSyncBatchNorm.revert(model)
