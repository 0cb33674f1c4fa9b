"""DensePose R-CNN's chart training: which proposals train, where their annotated points fall on
the output grids, and the chart losses (Detectron2's ``DensePoseDataFilter``, ``DensePoseChartLoss``
with its ``BilinearInterpolationHelper``).

Training (``target["densepose"]``, see :mod:`detzoo.data.densepose`) uses the foreground
proposals whose IoU with their matched ground truth exceeds ``fg_iou_threshold`` and whose ground
truth has DensePose data. At each annotated point, the outputs are bilinearly interpolated on the
``S x S`` grid (cell ``i`` at position ``i``, Detectron2's convention); the losses are

* ``loss_densepose_U`` / ``_V``: summed smooth-L1 (beta 1) of the point's part channel against its
  U / V, over points inside the proposal on a body part, times ``point_regression_weight``;
* ``loss_densepose_I``: mean cross-entropy of the interpolated fine-part scores against the part
  index, over points inside the proposal (background points included), times ``part_weight``;
* ``loss_densepose_S``: mean cross-entropy of ``coarse_segm`` against the annotated part map
  ``segm`` resampled (nearest) from its frame ``segm_box`` into the proposal, foreground / background
  when K = 2, times ``index_weight``.

Differences from Detectron2, all in training only: points are in image pixels and ``segm`` is
resampled from ``segm_box`` (Detectron2 places both in the possibly clipped ground-truth box, which
differs for boxes cut by the image border); images without DensePose data contribute no instances
(Detectron2 drops them from the proposal list, shifting the other images' batch indices).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from detzoo.heads.roi_sampling import SampledProposals
from detzoo.structures import matched_iou


def select_proposals_with_densepose(
    instances: Sequence[SampledProposals],
    targets: Sequence[Mapping[str, object]],
    iou_threshold: float,
) -> list[SampledProposals]:
    """Each image's proposals with IoU ``> iou_threshold`` to their matched ground truth whose
    ``target["densepose"]`` entry is not ``None`` (Detectron2's ``DensePoseDataFilter``)."""
    out = []
    for i, (inst, target) in enumerate(zip(instances, targets)):
        if len(inst.boxes) == 0:
            out.append(inst)
            continue
        if "densepose" not in target:
            raise ValueError(
                f"training target {i} has no 'densepose'; the DensePose head needs DensePose "
                f"annotations (detzoo.data.CocoDensePose / task 'densepose')"
            )
        annotations = target["densepose"]
        has_data = torch.tensor(
            [annotations[g] is not None for g in inst.gt_index.tolist()],
            dtype=torch.bool,
            device=inst.boxes.device,
        )
        out.append(inst.select(has_data & (matched_iou(inst.gt_boxes, inst.boxes) > iou_threshold)))
    return out


def grid_interpolation(
    coords: torch.Tensor, start: torch.Tensor, size: torch.Tensor, cells: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Linear interpolation of positions ``coords`` (pixels, ``[P]``) on intervals
    ``[start, start + size)`` divided into ``cells`` grid values at positions
    ``(coord - start) * cells / size`` (value ``i`` at ``i``; Detectron2's
    ``_linear_interpolation_utilities``).

    Returns:
        ``lo``, ``hi``: int64 ``[P]`` grid indices in ``[0, cells)``; ``weight``: float ``[P]``
        weight of ``hi`` (``lo`` weighs ``1 - weight``; past the last value, all on it);
        ``inside``: bool ``[P]``, whether the position lies in the interval.
    """
    offset = coords - start
    inside = (offset >= 0) & (offset < size)
    position = offset * cells / size
    lo = position.floor().long().clamp(min=0, max=cells - 1)
    hi = (lo + 1).clamp(max=cells - 1)
    weight = torch.minimum(hi.to(position.dtype), position) - lo.to(position.dtype)
    return lo, hi, weight, inside


@dataclass
class DensePosePoints:
    """A batch's annotated points located on the ``S x S`` output grids of their ROIs.

    ``roi`` int64 ``[P]``: the output row of each point; ``part`` int64 ``[P]`` fine part 0..24;
    ``u``, ``v`` float ``[P]``; ``x_lo``, ``x_hi``, ``y_lo``, ``y_hi`` int64 ``[P]`` grid indices and
    ``x_weight``, ``y_weight`` float ``[P]`` the weights of ``x_hi`` / ``y_hi``; ``inside`` bool
    ``[P]``: the point lies in its ROI's box.
    """

    roi: torch.Tensor
    part: torch.Tensor
    u: torch.Tensor
    v: torch.Tensor
    x_lo: torch.Tensor
    x_hi: torch.Tensor
    y_lo: torch.Tensor
    y_hi: torch.Tensor
    x_weight: torch.Tensor
    y_weight: torch.Tensor
    inside: torch.Tensor

    @classmethod
    def locate(
        cls,
        roi: torch.Tensor,
        rois: torch.Tensor,
        xy: torch.Tensor,
        part: torch.Tensor,
        uv: torch.Tensor,
        side: int,
    ) -> DensePosePoints:
        """Points at ``xy`` ``[P, 2]`` (image pixels) of ROIs ``rois[roi]`` (XYXY ``[R, 4]``) on an
        ``side x side`` grid over each box."""
        boxes = rois[roi]
        x_lo, x_hi, x_w, x_in = grid_interpolation(
            xy[:, 0], boxes[:, 0], boxes[:, 2] - boxes[:, 0], side
        )
        y_lo, y_hi, y_w, y_in = grid_interpolation(
            xy[:, 1], boxes[:, 1], boxes[:, 3] - boxes[:, 1], side
        )
        return cls(roi, part, uv[:, 0], uv[:, 1], x_lo, x_hi, y_lo, y_hi, x_w, y_w, x_in & y_in)

    def interpolate(self, maps: torch.Tensor, channel: torch.Tensor | None = None) -> torch.Tensor:
        """Bilinear values of ``maps`` ``[R, C, S, S]`` at the points: ``[P]`` of each point's
        ``channel`` (int64 ``[P]``), or ``[P, C]`` of all channels when ``channel`` is None."""
        index = (self.roi, self.y_lo, self.y_hi, self.x_lo, self.x_hi, self.x_weight, self.y_weight)
        if channel is None:
            index = tuple(t[:, None] for t in index)
            channel = torch.arange(maps.shape[1], device=maps.device)[None]
        roi, y_lo, y_hi, x_lo, x_hi, x_w, y_w = index
        return (
            maps[roi, channel, y_lo, x_lo] * ((1.0 - x_w) * (1.0 - y_w))
            + maps[roi, channel, y_lo, x_hi] * (x_w * (1.0 - y_w))
            + maps[roi, channel, y_hi, x_lo] * ((1.0 - x_w) * y_w)
            + maps[roi, channel, y_hi, x_hi] * (x_w * y_w)
        )


@dataclass
class DensePoseAnnotations:
    """The DensePose ground truth of a batch's training ROIs (Detectron2's
    ``PackedChartBasedAnnotations``): ``points`` of every ROI with annotated points; ``rows`` int64
    ``[N]`` the output rows of those ROIs, ``boxes`` ``[N, 4]`` their XYXY boxes; ``segm`` float
    ``[N, H, W]`` their coarse part maps over the XYXY frames ``segm_boxes`` ``[N, 4]`` (``None``
    unless every one of them has a map)."""

    points: DensePosePoints
    rows: torch.Tensor
    boxes: torch.Tensor
    segm: torch.Tensor | None
    segm_boxes: torch.Tensor | None


def pack_densepose_annotations(
    instances: Sequence[SampledProposals],
    targets: Sequence[Mapping[str, object]],
    side: int,
) -> DensePoseAnnotations | None:
    """The annotations of all images' ``instances`` (in order; each ROI's ground truth is
    ``target["densepose"][gt_index]``) on ``side x side`` output grids, or ``None`` when no ROI has
    an annotated point."""
    rois = torch.cat([s.boxes for s in instances])
    device = rois.device
    rows, xy, part, uv, segm, segm_boxes, roi_of_point = [], [], [], [], [], [], []
    offset = 0
    for inst, target in zip(instances, targets):
        annotations = target["densepose"] if len(inst.boxes) else []
        for r, g in enumerate(inst.gt_index.tolist()):
            dp = annotations[g]
            if dp is None or len(dp["x"]) == 0:
                continue
            rows.append(offset + r)
            n = len(dp["x"])
            roi_of_point.append(torch.full((n,), offset + r, dtype=torch.int64))
            xy.append(torch.stack([dp["x"], dp["y"]], dim=1))
            part.append(dp["I"])
            uv.append(torch.stack([dp["U"], dp["V"]], dim=1))
            if "segm" in dp:
                segm.append(dp["segm"])
                segm_boxes.append(dp["segm_box"])
        offset += len(inst.boxes)
    if not rows:
        return None
    dtype = rois.dtype
    points = DensePosePoints.locate(
        torch.cat(roi_of_point).to(device),
        rois,
        torch.cat(xy).to(device=device, dtype=dtype),
        torch.cat(part).to(device=device, dtype=torch.int64),
        torch.cat(uv).to(device=device, dtype=dtype),
        side,
    )
    rows_t = torch.tensor(rows, dtype=torch.int64, device=device)
    complete = len(segm) == len(rows)
    return DensePoseAnnotations(
        points,
        rows_t,
        rois[rows_t],
        torch.stack(segm).to(device=device, dtype=dtype) if complete else None,
        torch.stack(segm_boxes).to(device=device, dtype=dtype) if complete else None,
    )


def resample_to_boxes(
    maps: torch.Tensor, src_boxes: torch.Tensor, dst_boxes: torch.Tensor, size: int
) -> torch.Tensor:
    """Nearest-neighbour resampling of ``maps`` ``[N, H, W]`` covering the XYXY frames ``src_boxes``
    ``[N, 4]`` into ``size x size`` maps over ``dst_boxes`` ``[N, 4]`` (0 outside the source), as
    Detectron2's ``resample_data``: output cell ``j`` samples the source at normalised position
    ``j / size`` of the destination box, with the source's first and last pixels at its edges."""
    src_size = src_boxes[:, 2:] - src_boxes[:, :2]
    start = 2 * (dst_boxes[:, :2] - src_boxes[:, :2]) / src_size - 1
    end = 2 * (dst_boxes[:, 2:] - src_boxes[:, :2]) / src_size - 1
    steps = torch.arange(size, device=maps.device, dtype=maps.dtype) / size
    n = len(maps)
    grid_x = steps[None, None, :] * (end - start)[:, None, None, 0] + start[:, None, None, 0]
    grid_y = steps[None, :, None] * (end - start)[:, None, None, 1] + start[:, None, None, 1]
    grid = torch.stack((grid_x.expand(n, size, size), grid_y.expand(n, size, size)), dim=3)
    return F.grid_sample(
        maps[:, None], grid, mode="nearest", padding_mode="zeros", align_corners=True
    )[:, 0]


#: each loss term and the chart output it is computed from
_LOSS_OUTPUTS = {
    "loss_densepose_U": "u",
    "loss_densepose_V": "v",
    "loss_densepose_I": "fine_segm",
    "loss_densepose_S": "coarse_segm",
}


def densepose_chart_losses(
    chart: Mapping[str, torch.Tensor],
    annotations: DensePoseAnnotations | None,
    point_regression_weight: float = 0.01,
    part_weight: float = 1.0,
    index_weight: float = 5.0,
) -> dict[str, torch.Tensor]:
    """Detectron2's ``DensePoseChartLoss`` (see the module docstring).

    Args:
        chart: ``coarse_segm`` ``[R, K, S, S]``, ``fine_segm``, ``u``, ``v`` ``[R, C, S, S]``.
        annotations: :func:`pack_densepose_annotations` of the ``R`` ROIs (``None``: none).
        point_regression_weight, part_weight, index_weight: multipliers of the U/V, I and S terms
            (``POINT_REGRESSION_WEIGHTS``, ``PART_WEIGHTS``, ``INDEX_WEIGHTS``).

    Returns:
        ``loss_densepose_U``, ``_V``, ``_I``, ``_S``: scalars. All are ``0 * output.sum()`` (zero,
        with a gradient path) when no point lies inside its ROI on a body part; ``_S`` alone is
        when some ROI has no ``segm``.
    """
    zero = {name: chart[key].sum() * 0 for name, key in _LOSS_OUTPUTS.items()}
    if annotations is None:
        return zero
    points = annotations.points
    on_part = points.inside & (points.part > 0)
    if not on_part.any():
        return zero
    losses = {}
    for name, target in (("loss_densepose_U", points.u), ("loss_densepose_V", points.v)):
        estimate = points.interpolate(chart[_LOSS_OUTPUTS[name]], points.part)
        losses[name] = (
            F.smooth_l1_loss(estimate[on_part], target[on_part], reduction="sum")
            * point_regression_weight
        )
    fine = points.interpolate(chart["fine_segm"])[points.inside]
    losses["loss_densepose_I"] = F.cross_entropy(fine, points.part[points.inside]) * part_weight
    if annotations.segm is None:
        losses["loss_densepose_S"] = zero["loss_densepose_S"]
        return losses
    coarse = chart["coarse_segm"][annotations.rows]
    with torch.no_grad():
        segm = resample_to_boxes(
            annotations.segm, annotations.segm_boxes, annotations.boxes, coarse.shape[-1]
        )
    if coarse.shape[1] == 2:
        segm = segm > 0
    losses["loss_densepose_S"] = F.cross_entropy(coarse, segm.long()) * index_weight
    return losses
