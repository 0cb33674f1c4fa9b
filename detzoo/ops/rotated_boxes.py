"""IoU and non-maximum suppression of rotated boxes, with Detectron2's semantics.

A rotated box is ``(cx, cy, w, h, angle)``: centre and size in pixels, angle in degrees,
counter-clockwise in image coordinates (y down), as in ``detectron2.structures.RotatedBoxes``.

With the compiled kernels these call ``torch.ops.detzoo.box_iou_rotated`` / ``nms_rotated``.
Without them, a vectorised plain-PyTorch version computes the same polygon intersection
(torchvision has no rotated-box ops, hence the own implementation in both paths).
"""

from __future__ import annotations

import math

import torch

from detzoo.ops._ext import HAS_EXT

__all__ = ["batched_nms_rotated", "nms_rotated", "pairwise_iou_rotated"]

# Largest number of box pairs the plain-PyTorch path holds in memory at once.
_PAIRS_PER_CHUNK = 1 << 16


def _check_boxes(boxes: torch.Tensor, name: str) -> None:
    if not isinstance(boxes, torch.Tensor) or boxes.dim() != 2 or boxes.shape[-1] != 5:
        shape = tuple(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ValueError(f"{name} must be a [N, 5] tensor of (cx, cy, w, h, angle), got {shape}")
    if not boxes.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {boxes.dtype}")


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 when any input is float64, float32 otherwise (half/bfloat16 are upcast)."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


# --- plain-PyTorch path ------------------------------------------------------------------------


def _box_frames(boxes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Per-box (cx, cy, half_w, half_h, cos, sin, area), as ops/box_iou_rotated_utils.h computes
    them: angles reduced and converted in float64, exact cos/sin at multiples of 90 degrees."""
    dtype = boxes.dtype
    cx, cy, w, h = boxes.unbind(-1)[:4]
    angle = torch.fmod(boxes[:, 4].double(), 360.0)
    quarter = angle / 90.0
    axis_aligned = quarter == quarter.floor()
    k = torch.remainder(quarter.floor(), 4.0)
    exact_cos = torch.where(k == 0, 1.0, torch.where(k == 2, -1.0, 0.0))
    exact_sin = torch.where(k == 1, 1.0, torch.where(k == 3, -1.0, 0.0))
    theta = angle * (math.pi / 180.0)
    cos = torch.where(axis_aligned, exact_cos, theta.cos()).to(dtype)
    sin = torch.where(axis_aligned, exact_sin, theta.sin()).to(dtype)
    return cx, cy, w.abs() / 2, h.abs() / 2, cos, sin, w * h


def _clip(u: torch.Tensor, v: torch.Tensor, count: torch.Tensor, on_u: bool, sign: float, lim):
    """One Sutherland-Hodgman step on a batch of padded polygons ``u, v [P, K]`` holding
    ``count [P]`` vertices: keeps the half-plane ``sign * coord <= lim [P]``."""
    slots = torch.arange(u.shape[1], device=u.device)
    valid = slots < count[:, None]
    nxt = torch.where(slots + 1 < count[:, None], slots + 1, 0)
    u_next, v_next = u.gather(1, nxt), v.gather(1, nxt)
    x, x_next = (u, u_next) if on_u else (v, v_next)
    y, y_next = (v, v_next) if on_u else (u, u_next)
    d = lim[:, None] - sign * x
    d_next = lim[:, None] - sign * x_next
    inside, inside_next = d >= 0, d_next >= 0
    keep_vertex = valid & inside
    add_crossing = valid & (inside != inside_next)
    t = d / torch.where(add_crossing, d - d_next, 1.0)
    cross_x = (sign * lim)[:, None].expand_as(x)
    cross_y = y + t * (y_next - y)
    cross_u, cross_v = (cross_x, cross_y) if on_u else (cross_y, cross_x)
    # Candidates in polygon order: vertex i, then the crossing on edge (i, i+1).
    cand_u = torch.stack((u, cross_u), 2).flatten(1)
    cand_v = torch.stack((v, cross_v), 2).flatten(1)
    emitted = torch.stack((keep_vertex, add_crossing), 2).flatten(1)
    new_count = emitted.sum(1)
    width = max(int(new_count.max()), 1)
    order = torch.sort((~emitted).to(torch.uint8), dim=1, stable=True).indices[:, :width]
    return cand_u.gather(1, order), cand_v.gather(1, order), new_count


def _polygon_area(u: torch.Tensor, v: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    slots = torch.arange(u.shape[1], device=u.device)
    nxt = torch.where(slots + 1 < count[:, None], slots + 1, 0)
    terms = u * v.gather(1, nxt) - u.gather(1, nxt) * v
    twice = torch.where(slots < count[:, None], terms, 0.0).sum(1)
    return torch.where(count >= 3, twice.abs() / 2, 0.0)


def _intersection_area_torch(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]):
    """Intersection areas of the box pairs ``a[k], b[k]`` (tuples from ``_box_frames`` of equal
    length P): box a clipped in box b's frame, as the kernel does."""
    acx, acy, ahw, ahh, ac, as_ = a[:6]
    bcx, bcy, bhw, bhh, bc, bs = b[:6]
    gx, gy = acx - bcx, acy - bcy
    pu, pv = gx * bc - gy * bs, gx * bs + gy * bc
    rc, rs = ac * bc + as_ * bs, as_ * bc - ac * bs
    xu, xv, yu, yv = rc * ahw, -rs * ahw, rs * ahh, rc * ahh
    u = torch.stack((pu + xu + yu, pu - xu + yu, pu - xu - yu, pu + xu - yu), 1)
    v = torch.stack((pv + xv + yv, pv - xv + yv, pv - xv - yv, pv + xv - yv), 1)
    count = torch.full_like(pu, 4, dtype=torch.long)
    for on_u, sign, lim in (
        (True, 1.0, bhw),
        (True, -1.0, bhw),
        (False, 1.0, bhh),
        (False, -1.0, bhh),
    ):
        u, v, count = _clip(u, v, count, on_u, sign, lim)
    return _polygon_area(u, v, count)


def _pairwise_iou_rotated_torch(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Plain-PyTorch ``box_iou_rotated`` (same dtype rules as the kernel: float32 or float64)."""
    n, m = boxes1.shape[0], boxes2.shape[0]
    out = boxes1.new_zeros((n, m))
    if n == 0 or m == 0:
        return out
    fb = _box_frames(boxes2)
    rows = max(1, _PAIRS_PER_CHUNK // m)
    for start in range(0, n, rows):
        fa = _box_frames(boxes1[start : start + rows])
        k = fa[0].shape[0]
        a = tuple(t[:, None].expand(k, m).reshape(-1) for t in fa)
        b = tuple(t[None, :].expand(k, m).reshape(-1) for t in fb)
        inter = _intersection_area_torch(a, b)
        valid = (a[6] >= 1e-14) & (b[6] >= 1e-14)
        iou = torch.where(valid, inter / torch.where(valid, a[6] + b[6] - inter, 1.0), 0.0)
        out[start : start + k] = iou.view(k, m)
    return out


def _nms_rotated_torch(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float):
    """Plain-PyTorch ``nms_rotated``: the IoU matrix, then the greedy pass on the CPU."""
    order = torch.sort(scores, descending=True, stable=True).indices
    over = _pairwise_iou_rotated_torch(boxes[order], boxes[order]) > iou_threshold
    over = over.triu(1).cpu()
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    kept = []
    for i in range(len(order)):
        if not suppressed[i]:
            kept.append(i)
            suppressed |= over[i]
    return order[torch.tensor(kept, dtype=torch.long, device=order.device)]


# --- public API --------------------------------------------------------------------------------


def pairwise_iou_rotated(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """IoU of every pair of rotated boxes (Detectron2's ``pairwise_iou_rotated``).

    Args:
        boxes1: ``[N, 5]`` floating tensor of ``(cx, cy, w, h, angle)``; centre and size in
            pixels, angle in degrees counter-clockwise (image coordinates, y down).
        boxes2: ``[M, 5]`` tensor of the same kind, on the same device.

    Returns:
        ``[N, M]`` IoU in ``[0, 1]``; 0 where either box has an area ``w * h`` below 1e-14.
        Computed in float64 when either input is float64, else in float32 (float16/bfloat16
        inputs are upcast); the result has that dtype.
    """
    _check_boxes(boxes1, "boxes1")
    _check_boxes(boxes2, "boxes2")
    if boxes1.device != boxes2.device:
        raise ValueError(f"boxes1 and boxes2 are on {boxes1.device} and {boxes2.device}")
    dtype = _compute_dtype(boxes1, boxes2)
    boxes1, boxes2 = boxes1.to(dtype), boxes2.to(dtype)
    if HAS_EXT:
        return torch.ops.detzoo.box_iou_rotated(boxes1, boxes2)
    return _pairwise_iou_rotated_torch(boxes1, boxes2)


def _check_nms_inputs(boxes: torch.Tensor, scores: torch.Tensor) -> None:
    _check_boxes(boxes, "boxes")
    if (
        not isinstance(scores, torch.Tensor)
        or scores.dim() != 1
        or scores.shape[0] != boxes.shape[0]
    ):
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(
            f"scores must be a [N] tensor with N = {boxes.shape[0]} boxes, got {shape}"
        )
    if scores.device != boxes.device:
        raise ValueError(f"boxes and scores are on {boxes.device} and {scores.device}")


def nms_rotated(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression of rotated boxes (Detectron2's ``nms_rotated``).

    Boxes are visited by decreasing score (ties: lower index first); each kept box suppresses
    every later box whose IoU with it is greater than ``iou_threshold``.

    Args:
        boxes: ``[N, 5]`` floating tensor of ``(cx, cy, w, h, angle)`` (pixels, degrees CCW).
        scores: ``[N]`` scores, any real dtype, same device.
        iou_threshold: suppression threshold on IoU, in ``[0, 1]``.

    Returns:
        int64 ``[K]`` indices into ``boxes`` of the kept boxes, by decreasing score.
    """
    _check_nms_inputs(boxes, scores)
    boxes = boxes.to(_compute_dtype(boxes))
    if HAS_EXT:
        return torch.ops.detzoo.nms_rotated(boxes, scores, float(iou_threshold))
    return _nms_rotated_torch(boxes, scores, float(iou_threshold))


def batched_nms_rotated(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """Per-category :func:`nms_rotated` (Detectron2's ``batched_nms_rotated``).

    Boxes of different categories never suppress each other: each category's boxes are moved
    (in a copy) by a multiple of the extent of all boxes, so no two categories overlap.

    Args:
        boxes: ``[N, 5]`` floating tensor of ``(cx, cy, w, h, angle)`` (pixels, degrees CCW).
        scores: ``[N]`` scores.
        idxs: ``[N]`` integer category of each box.
        iou_threshold: suppression threshold on IoU, in ``[0, 1]``.

    Returns:
        int64 ``[K]`` indices into ``boxes`` of the kept boxes, by decreasing score.
    """
    _check_nms_inputs(boxes, scores)
    if idxs.shape != scores.shape:
        raise ValueError(f"idxs must be [N] like scores, got {tuple(idxs.shape)}")
    if boxes.shape[0] == 0:
        return torch.empty((0,), dtype=torch.int64, device=boxes.device)
    boxes = boxes.to(_compute_dtype(boxes))
    # Every box lies within its half-diagonal of its centre, whatever its angle (Detectron2 uses
    # max(w, h) / 2, which a rotated box can exceed by up to ~0.2 max(w, h)).
    reach = torch.hypot(boxes[:, 2], boxes[:, 3]) / 2
    hi = (torch.maximum(boxes[:, 0], boxes[:, 1]) + reach).max()
    lo = (torch.minimum(boxes[:, 0], boxes[:, 1]) - reach).min()
    offsets = idxs.to(boxes) * (hi - lo + 1)
    shifted = torch.cat((boxes[:, :2] + offsets[:, None], boxes[:, 2:]), 1)
    return nms_rotated(shifted, scores, iou_threshold)


if HAS_EXT:

    @torch.library.register_fake("detzoo::box_iou_rotated")
    def _box_iou_rotated_fake(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
        torch._check(boxes1.dim() == 2 and boxes1.shape[1] == 5)
        torch._check(boxes2.dim() == 2 and boxes2.shape[1] == 5)
        return boxes1.new_empty((boxes1.shape[0], boxes2.shape[0]))

    @torch.library.register_fake("detzoo::nms_rotated")
    def _nms_rotated_fake(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float):
        torch._check(boxes.dim() == 2 and boxes.shape[1] == 5)
        torch._check(scores.dim() == 1 and scores.shape[0] == boxes.shape[0])
        num_kept = torch.library.get_ctx().new_dynamic_size()
        return boxes.new_empty((num_kept,), dtype=torch.int64)

    # Under autocast the geometry still runs in float32 (IoU in half precision is meaningless).
    for _op in ("detzoo::box_iou_rotated", "detzoo::nms_rotated"):
        for _device in ("cpu", "cuda"):
            torch.library.register_autocast(_op, _device, torch.float32)
