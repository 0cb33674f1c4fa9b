"""Sigmoid focal loss (Lin et al., "Focal Loss for Dense Object Detection") summed over every
(anchor, class) pair, computed block by block.

The function is Detectron2's ``sigmoid_focal_loss_jit`` (and torchvision's
``sigmoid_focal_loss``) with ``reduction="sum"``, over one-hot targets given as class indices:

    loss(x, t) = α_t · (1 - p_t)^γ · BCE(x, t),   p = σ(x),  p_t = p if t else 1 - p,
    α_t = α if t else 1 - α   (no α weighting when α < 0).

A dense head scores ~10^5 anchors × K classes per batch: written as a chain of tensor operations
the loss allocates a dozen full-size temporaries, forward and backward (each ~40 MB, each
faulted into memory page by page on the CPU). Here the forward and the backward run over blocks
of rows that stay in the cache, the one-hot targets are never built, and the only full-size
tensor allocated is the gradient itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

BLOCK_ELEMENTS = 2048 * 80  # (anchor, class) pairs per block: 2,048 COCO anchors, 640 KiB


def _alphas(alpha: float) -> tuple[float, float]:
    """(positive, negative) weights."""
    return (alpha, 1.0 - alpha) if alpha >= 0 else (1.0, 1.0)


def _foreground(labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(row, class) of each foreground anchor's true class in a block: its one positive pair."""
    rows = ((labels >= 0) & (labels < num_classes)).nonzero().squeeze(1)
    return rows, labels[rows]


def _block_loss(x: torch.Tensor, labels: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """Summed loss of one block: ``x`` ``[B, K]`` float32, ``labels`` ``[B]`` in ``[-1, K]``."""
    pos_w, neg_w = _alphas(alpha)
    p = torch.sigmoid(x)
    # every pair as a negative: (1 - α) p^γ softplus(x)   (-log(1 - p) = softplus(x))
    neg = p.pow_(gamma).mul_(F.softplus(x))
    neg[labels < 0] = 0.0  # ignored anchors
    total = neg_w * neg.sum()
    r, c = _foreground(labels, x.shape[1])  # these pairs are positives instead
    xt = x[r, c]
    pos = (1 - torch.sigmoid(xt)).pow(gamma) * F.softplus(-xt)
    return total + pos_w * pos.sum() - neg_w * neg[r, c].sum()


def _block_grad(x: torch.Tensor, labels: torch.Tensor, alpha: float, gamma: float) -> torch.Tensor:
    """d(block loss)/dx, ``[B, K]``:

    negative pair: (1 - α) p^γ (γ (1 - p) softplus(x) + p);
    positive pair: -α (1 - p)^γ (γ p softplus(-x) + 1 - p).
    """
    pos_w, neg_w = _alphas(alpha)
    p = torch.sigmoid(x)
    q = 1 - p
    grad = q.mul(gamma).mul_(F.softplus(x)).add_(p).mul_(p.pow(gamma)).mul_(neg_w)
    grad[labels < 0] = 0.0
    r, c = _foreground(labels, x.shape[1])
    pt, qt = p[r, c], q[r, c]
    grad[r, c] = -pos_w * qt.pow(gamma) * (gamma * pt * F.softplus(-x[r, c]) + qt)
    return grad


def _block_rows(logits: torch.Tensor) -> int:
    return max(1, BLOCK_ELEMENTS // max(1, logits.shape[1]))


class _SigmoidFocalLossSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, labels, alpha, gamma):
        ctx.save_for_backward(logits, labels)
        ctx.alpha, ctx.gamma = alpha, gamma
        total = logits.new_zeros((), dtype=torch.float32)
        rows = _block_rows(logits)
        for x, lab in zip(logits.split(rows), labels.split(rows)):
            total += _block_loss(x.float(), lab, alpha, gamma)
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_total):
        logits, labels = ctx.saved_tensors
        grad = torch.empty_like(logits)
        scale = grad_total.float()
        rows = _block_rows(logits)
        for x, lab, out in zip(logits.split(rows), labels.split(rows), grad.split(rows)):
            out.copy_(_block_grad(x.float(), lab, ctx.alpha, ctx.gamma).mul_(scale))
        return grad, None, None, None


def sigmoid_focal_loss_sum(
    logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Summed sigmoid focal loss of ``logits`` against class indices.

    Args:
        logits: ``[M, K]`` class scores (before the sigmoid) of M anchors; float32, float16 or
            bfloat16 (computed in float32).
        labels: ``[M]`` integer: ``0..K-1`` the anchor's class (a positive for it, a negative for
            every other class), ``K`` background (a negative for every class), ``-1`` ignored (no
            loss, zero gradient).
        alpha: weight of positives (negatives: ``1 - alpha``); negative for no weighting.
        gamma: focusing exponent, ≥ 0.

    Returns:
        A float32 scalar: the same value as ``torchvision.ops.sigmoid_focal_loss(
        logits[labels >= 0], one_hot(labels[labels >= 0])[:, :K], alpha, gamma, "sum")``, with its
        gradient.
    """
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"sigmoid_focal_loss_sum expects logits [M, K] and labels [M]; got "
            f"{tuple(logits.shape)} and {tuple(labels.shape)}"
        )
    if gamma < 0:
        raise ValueError(f"focal loss gamma must be >= 0, got {gamma}")
    return _SigmoidFocalLossSum.apply(logits, labels, float(alpha), float(gamma))
