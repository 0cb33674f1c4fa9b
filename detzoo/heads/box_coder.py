"""Box regression parametrisation (Detectron2's Box2BoxTransform), used by RPN, box heads and
RetinaNet.

A target box is coded relative to a source box (anchor or proposal) as
``(dx, dy, dw, dh) = (wx * (tx - sx) / sw, wy * (ty - sy) / sh, ww * log(tw / sw), wh * log(th / sh))``
with centres ``(x, y)`` and sizes ``(w, h)`` in pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from detzoo.config import Recordable

# Largest dw/dh applied when decoding: exp(4.135) = 1000/16, Detectron2's clamp.
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


class BoxCoder(Recordable):
    """Encodes target boxes as deltas from source boxes and decodes deltas back.

    Args:
        weights: ``(wx, wy, ww, wh)`` scaling the deltas (``(1, 1, 1, 1)`` for RPN,
            ``(10, 10, 5, 5)`` for Fast R-CNN heads).
        scale_clamp: upper bound on ``dw``/``dh`` before ``exp`` when decoding.
    """

    def __init__(self, weights: Sequence[float], scale_clamp: float = DEFAULT_SCALE_CLAMP):
        if len(weights) != 4:
            raise ValueError(f"box coder weights must be 4 numbers (wx, wy, ww, wh), got {weights}")
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = float(scale_clamp)

    def encode(self, src: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Deltas ``[R, 4]`` that turn ``src`` ``[R, 4]`` XYXY into ``target`` ``[R, 4]`` XYXY."""
        wx, wy, ww, wh = self.weights
        src_w = src[:, 2] - src[:, 0]
        src_h = src[:, 3] - src[:, 1]
        src_x = src[:, 0] + 0.5 * src_w
        src_y = src[:, 1] + 0.5 * src_h
        tgt_w = target[:, 2] - target[:, 0]
        tgt_h = target[:, 3] - target[:, 1]
        tgt_x = target[:, 0] + 0.5 * tgt_w
        tgt_y = target[:, 1] + 0.5 * tgt_h
        return torch.stack(
            (
                wx * (tgt_x - src_x) / src_w,
                wy * (tgt_y - src_y) / src_h,
                ww * torch.log(tgt_w / src_w),
                wh * torch.log(tgt_h / src_h),
            ),
            dim=1,
        )

    def decode(self, deltas: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """Applies deltas ``[R, 4*k]`` (k boxes per row, e.g. one per class) to boxes ``[R, 4]``.

        Returns XYXY boxes ``[R, 4*k]`` in the dtype of ``deltas``, at least float32: half and
        bfloat16 deltas (autocast) are decoded in float32, as Detectron2 does, since bfloat16
        boxes are off by pixels (8 significant bits).
        """
        dtype = torch.promote_types(deltas.dtype, torch.float32)
        deltas = deltas.to(dtype)
        boxes = boxes.to(dtype)
        wx, wy, ww, wh = self.weights
        widths = boxes[:, 2] - boxes[:, 0]
        heights = boxes[:, 3] - boxes[:, 1]
        ctr_x = boxes[:, 0] + 0.5 * widths
        ctr_y = boxes[:, 1] + 0.5 * heights

        dx = deltas[:, 0::4] / wx
        dy = deltas[:, 1::4] / wy
        dw = torch.clamp(deltas[:, 2::4] / ww, max=self.scale_clamp)
        dh = torch.clamp(deltas[:, 3::4] / wh, max=self.scale_clamp)

        pred_x = dx * widths[:, None] + ctr_x[:, None]
        pred_y = dy * heights[:, None] + ctr_y[:, None]
        pred_w = torch.exp(dw) * widths[:, None]
        pred_h = torch.exp(dh) * heights[:, None]
        pred = torch.stack(
            (
                pred_x - 0.5 * pred_w,
                pred_y - 0.5 * pred_h,
                pred_x + 0.5 * pred_w,
                pred_y + 0.5 * pred_h,
            ),
            dim=-1,
        )
        return pred.reshape(deltas.shape)
