"""ROIAlignRotated with Detectron2's semantics.

A rotated roi ``(batch_index, cx, cy, w, h, angle)`` is a box of size ``w x h`` image pixels
centred at ``(cx, cy)`` and rotated ``angle`` degrees counter-clockwise. Scaled by
``spatial_scale`` and shifted by -0.5 feature pixel (always, like ``roi_align(aligned=True)``),
it is divided into ``output_size`` bins along its own axes; each bin averages a regular grid of
bilinear samples (``sampling_ratio`` per side, or ``ceil(roi_size / output_size)`` when
``sampling_ratio <= 0``). Samples outside ``[-1, H] x [-1, W]`` read 0. A sample at ``(u, v)`` of
the roi's frame (relative to its centre) lies at ``y = v cos(a) - u sin(a) + cy``,
``x = v sin(a) + u cos(a) + cx`` on the feature map (Detectron2's convention).

With the compiled kernels this calls ``torch.ops.detzoo.roi_align_rotated`` (the roi_align
kernels with rotated grids; half / bfloat16 features are accumulated in float32). Without them it
runs a vectorised plain-PyTorch version (differentiable through autograd) with the same results.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from detzoo.ops._ext import HAS_EXT
from detzoo.ops.roi_pooling import as_rois, check_input, opmath_dtype, pair, register_roi_op

__all__ = ["ROIAlignRotated", "roi_align_rotated"]

# Largest [rois, samples, channels] block the plain-PyTorch version gathers at once (elements).
_CHUNK_ELEMENTS = 1 << 24


def _bilinear_sum(
    feats: torch.Tensor, batch: torch.Tensor, y: torch.Tensor, x: torch.Tensor
) -> torch.Tensor:
    """Bilinear samples of channels-last ``feats`` ``[B*H*W, C]`` at ``[n, S]`` positions of
    images ``batch`` ``[n, 1]``, with torchvision's border rules -> ``[n, S, C]``."""
    height, width = feats.shape[1], feats.shape[2]
    flat = feats.reshape(-1, feats.shape[3])
    inside = (y >= -1) & (y <= height) & (x >= -1) & (x <= width)
    y, x = y.clamp(min=0), x.clamp(min=0)
    y0, x0 = y.long(), x.long()  # truncation == floor for y, x >= 0
    y_last, x_last = y0 >= height - 1, x0 >= width - 1
    y = torch.where(y_last, float(height - 1), y)
    x = torch.where(x_last, float(width - 1), x)
    y0, x0 = y0.clamp(max=height - 1), x0.clamp(max=width - 1)
    y1 = torch.where(y_last, y0, y0 + 1)
    x1 = torch.where(x_last, x0, x0 + 1)
    ly, lx = y - y0, x - x0
    hy, hx = 1 - ly, 1 - lx
    base = batch * (height * width)
    total = 0
    for wy, wx, yi, xi in ((hy, hx, y0, x0), (hy, lx, y0, x1), (ly, hx, y1, x0), (ly, lx, y1, x1)):
        weight = torch.where(inside, wy * wx, 0)
        total = total + weight[..., None] * flat[base + yi * width + xi]
    return total


def _roi_align_rotated_torch(
    input: torch.Tensor,
    rois: torch.Tensor,
    spatial_scale: float,
    pooled_height: int,
    pooled_width: int,
    sampling_ratio: int,
) -> torch.Tensor:
    """Plain-PyTorch ROIAlignRotated (the fallback): rois are grouped by sampling-grid size, and
    each group is sampled at once (in blocks of at most ``_CHUNK_ELEMENTS`` values)."""
    dtype = opmath_dtype(input.dtype)
    feats = input.to(dtype).permute(0, 2, 3, 1)  # [B, H, W, C]
    r = rois.to(dtype)
    if bool((r[:, 3:5] < 0).any()):
        raise ValueError(
            "roi_align_rotated: rois have negative size (w, h); rotated rois need w >= 0 and h >= 0"
        )
    num_rois, channels = r.shape[0], feats.shape[3]
    out = feats.new_zeros((num_rois, channels, pooled_height, pooled_width))
    if num_rois == 0 or feats.numel() == 0:
        return out.to(input.dtype)
    batch = r[:, 0].long()
    if bool(((batch < 0) | (batch >= feats.shape[0])).any()):
        raise ValueError(f"roi_align_rotated: batch indices must be in [0, {feats.shape[0]})")
    centre_x, centre_y = r[:, 1] * spatial_scale - 0.5, r[:, 2] * spatial_scale - 0.5
    roi_w, roi_h = r[:, 3] * spatial_scale, r[:, 4] * spatial_scale
    theta = r[:, 5] * (math.pi / 180)
    cos, sin = torch.cos(theta), torch.sin(theta)
    bin_h, bin_w = roi_h / pooled_height, roi_w / pooled_width
    if sampling_ratio > 0:
        grid_h = grid_w = torch.full_like(batch, sampling_ratio)
    else:
        grid_h, grid_w = torch.ceil(bin_h).long(), torch.ceil(bin_w).long()
    ph = torch.arange(pooled_height, dtype=dtype, device=r.device)
    pw = torch.arange(pooled_width, dtype=dtype, device=r.device)
    for gh, gw in torch.unique(torch.stack((grid_h, grid_w), 1), dim=0).tolist():
        if gh <= 0 or gw <= 0:
            continue  # no samples: the bins stay 0
        members = torch.where((grid_h == gh) & (grid_w == gw))[0]
        samples = pooled_height * gh * pooled_width * gw
        step = max(1, _CHUNK_ELEMENTS // (samples * channels))
        iy = torch.arange(gh, dtype=dtype, device=r.device) + 0.5
        ix = torch.arange(gw, dtype=dtype, device=r.device) + 0.5
        for idx in torch.split(members, step):
            bh, bw = bin_h[idx, None, None], bin_w[idx, None, None]
            # roi-frame positions: yy [n, PH, gh], xx [n, PW, gw]
            yy = -roi_h[idx, None, None] / 2 + ph[:, None] * bh + iy * bh / gh
            xx = -roi_w[idx, None, None] / 2 + pw[:, None] * bw + ix * bw / gw
            yy, xx = yy[:, :, :, None, None], xx[:, None, None, :, :]
            c, s = cos[idx, None, None, None, None], sin[idx, None, None, None, None]
            y = yy * c - xx * s + centre_y[idx, None, None, None, None]
            x = yy * s + xx * c + centre_x[idx, None, None, None, None]
            n = len(idx)
            values = _bilinear_sum(feats, batch[idx, None], y.reshape(n, -1), x.reshape(n, -1))
            pooled = values.reshape(n, pooled_height, gh, pooled_width, gw, channels).sum((2, 4))
            out[idx] = (pooled / max(gh * gw, 1)).permute(0, 3, 1, 2)
    return out.to(input.dtype)


def roi_align_rotated(
    input: torch.Tensor,
    rois: torch.Tensor | list[torch.Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
) -> torch.Tensor:
    """ROIAlign over rotated rois (Detectron2's ``roi_align_rotated``).

    Args:
        input: ``[B, C, H, W]`` features, float32 / float64 / float16 / bfloat16 (half precision is
            accumulated in float32).
        rois: ``[K, 6]`` rois ``(batch_index, cx, cy, w, h, angle)``: centre and size in image
            pixels, angle in degrees counter-clockwise; ``w, h >= 0``. Or a list of ``B`` tensors
            ``[Ki, 5]`` (one per image, without the batch index). Any floating dtype, on the device
            of ``input``.
        output_size: bins per roi, ``int`` or ``(height, width)`` (along the roi's h and w).
        spatial_scale: feature-map pixels per image pixel.
        sampling_ratio: bilinear samples per bin side; ``<= 0``: ``ceil(roi_size / output_size)``.

    Returns:
        ``[K, C, output_height, output_width]`` pooled features in ``input``'s dtype.
    """
    rois = as_rois(rois, 5)
    check_input(input, rois)
    height, width = pair(output_size)
    args = (float(spatial_scale), height, width, int(sampling_ratio))
    if HAS_EXT:
        return torch.ops.detzoo.roi_align_rotated(input, rois, *args)
    return _roi_align_rotated_torch(input, rois, *args)


class ROIAlignRotated(nn.Module):
    """:func:`roi_align_rotated` as a module (Detectron2's ``ROIAlignRotated``).

    Args:
        output_size: bins per roi, ``int`` or ``(height, width)``.
        spatial_scale: feature-map pixels per image pixel.
        sampling_ratio: bilinear samples per bin side; ``<= 0``: adaptive.

    ``forward(input, rois)`` takes ``[B, C, H, W]`` features and ``[K, 6]`` rotated rois and
    returns ``[K, C, output_height, output_width]``.
    """

    def __init__(
        self, output_size: int | tuple[int, int], spatial_scale: float, sampling_ratio: int
    ) -> None:
        super().__init__()
        self.output_size = pair(output_size)
        self.spatial_scale = float(spatial_scale)
        self.sampling_ratio = int(sampling_ratio)

    def forward(self, input: torch.Tensor, rois: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        return roi_align_rotated(
            input, rois, self.output_size, self.spatial_scale, self.sampling_ratio
        )

    def extra_repr(self) -> str:
        return (
            f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}"
        )


if HAS_EXT:
    register_roi_op("roi_align_rotated", box_dim=5)
