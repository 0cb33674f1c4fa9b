"""DensePose chart outputs → per-box IUV maps (part index, U, V) and their drawing.

The DensePose head predicts, per detection, ``S x S`` charts over its box (see
:mod:`detzoo.heads.densepose_head`). :func:`chart_to_box_iuv` resamples them to the box's pixel
size as Detectron2's ``densepose_chart_predictor_output_to_result`` does
(``resample_fine_and_coarse_segm_to_bbox`` and ``resample_uv_tensors_to_bbox``): the box is
``(x, y, w, h)`` truncated to integers, every chart is resized bilinearly (``align_corners=False``)
to ``h x w``, the part index is the fine-segmentation argmax where the coarse argmax is not
background, and U, V are the channels of that part (0 on background).
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: DensePose's body-surface parts: fine part index I in 1..24, 0 = background
NUM_FINE_PARTS = 24


@dataclass
class BoxIUV:
    """One detection's DensePose result over its integer box.

    ``labels`` uint8 ``[h, w]``: fine part index 0..24 (0 = background); ``uv`` float32
    ``[2, h, w]``: U and V in the part's chart (0 on background); ``box_xywh``: the integer box
    ``(x, y, w, h)`` in image pixels the maps cover (pixel ``(i, j)`` of the maps is image pixel
    ``(y + i, x + j)``).
    """

    labels: torch.Tensor
    uv: torch.Tensor
    box_xywh: tuple[int, int, int, int]


def int_box_xywh(box: torch.Tensor) -> tuple[int, int, int, int]:
    """Detectron2's ``make_int_box`` of an XYXY box ``[4]`` (pixels): ``(x0, y0, x1 - x0, y1 - y0)``
    each truncated to an integer."""
    x0, y0, x1, y1 = box.tolist()
    x, y, w, h = torch.tensor([x0, y0, x1 - x0, y1 - y0], dtype=box.dtype).long().tolist()
    return x, y, w, h


def chart_to_box_iuv(
    coarse_segm: torch.Tensor,
    fine_segm: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    box: torch.Tensor,
) -> BoxIUV:
    """One detection's charts (``coarse_segm`` ``[K, S, S]``, ``fine_segm``, ``u``, ``v``
    ``[C, S, S]``) resampled into its XYXY ``box`` ``[4]`` (see the module docstring); boxes under a
    pixel wide or high give 1-pixel maps."""
    x, y, w, h = int_box_xywh(box)
    size = (max(h, 1), max(w, 1))

    def resize(maps: torch.Tensor) -> torch.Tensor:
        return F.interpolate(maps[None].float(), size, mode="bilinear", align_corners=False)[0]

    foreground = resize(coarse_segm).argmax(dim=0) > 0
    labels = resize(fine_segm).argmax(dim=0) * foreground
    uv = torch.stack([resize(u), resize(v)])  # [2, C, h, w]
    uv = uv.gather(1, labels[None, None].expand(2, 1, *size))[:, 0] * (labels > 0)
    return BoxIUV(labels.to(torch.uint8), uv.float(), (x, y, size[1], size[0]))


def densepose_to_box_iuv(
    densepose: Mapping[str, torch.Tensor], boxes: torch.Tensor
) -> list[BoxIUV]:
    """:func:`chart_to_box_iuv` of every detection of a prediction: ``densepose`` as the model
    predicts it (``coarse_segm`` ``[N, K, S, S]``, ``fine_segm``, ``u``, ``v`` ``[N, C, S, S]``) and
    its XYXY ``boxes`` ``[N, 4]`` (pixels)."""
    return [
        chart_to_box_iuv(
            densepose["coarse_segm"][i],
            densepose["fine_segm"][i],
            densepose["u"][i],
            densepose["v"][i],
            boxes[i],
        )  # fmt: skip
        for i in range(len(boxes))
    ]


def part_palette(num_parts: int = NUM_FINE_PARTS) -> torch.Tensor:
    """uint8 ``[num_parts + 1, 3]`` RGB colours of the part indices: row 0 (background) black, parts
    evenly spaced around the hue circle."""
    colours = [(0.0, 0.0, 0.0)]
    colours += [colorsys.hsv_to_rgb(k / num_parts, 0.85, 1.0) for k in range(num_parts)]
    return (torch.tensor(colours) * 255).round().to(torch.uint8)


def contour_mask(labels: torch.Tensor, uv: torch.Tensor, levels: int) -> torch.Tensor:
    """bool ``[h, w]``: the pixels where U or V crosses a multiple of ``1 / levels`` between a
    pixel and its right or lower neighbour on the same part (isolines of the charts)."""
    bands = (uv.clamp(0, 1) * levels).floor().clamp(max=levels - 1)  # [2, h, w]
    on = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    same_part = (labels[:, :-1] == labels[:, 1:]) & (labels[:, :-1] > 0)
    on[:, :-1] |= same_part & (bands[:, :, :-1] != bands[:, :, 1:]).any(dim=0)
    same_part = (labels[:-1] == labels[1:]) & (labels[:-1] > 0)
    on[:-1] |= same_part & (bands[:, :-1] != bands[:, 1:]).any(dim=0)
    return on


def draw_densepose(
    image: torch.Tensor,
    results: Sequence[BoxIUV],
    alpha: float = 0.7,
    contour_levels: int = 10,
    contour_color: tuple[int, int, int] = (255, 255, 255),
) -> torch.Tensor:
    """Draws DensePose results on an RGB uint8 image ``[3, H, W]`` and returns a new one: each
    result's body parts blended in :func:`part_palette` colours (``alpha`` = colour weight), with
    U/V isolines every ``1 / contour_levels`` (:func:`contour_mask`) in ``contour_color``. Results
    are drawn last to first, so the first (highest-scoring) lies on top; parts of boxes outside
    the image are cut."""
    if image.dim() != 3 or image.shape[0] != 3 or image.dtype != torch.uint8:
        raise ValueError(
            f"draw_densepose takes an RGB uint8 [3, H, W] image, got {image.dtype} "
            f"{tuple(image.shape)}"
        )
    height, width = image.shape[1:]
    out = image.clone().float()
    palette = part_palette().float().to(image.device)
    line = torch.tensor(contour_color, dtype=torch.float32, device=image.device)
    for result in reversed(results):
        x, y, w, h = result.box_xywh
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        if x1 <= x0 or y1 <= y0:
            continue
        crop = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
        labels = result.labels[crop].long().to(image.device)
        lines = contour_mask(
            labels, result.uv[(slice(None), *crop)].to(image.device), contour_levels
        )
        region = out[:, y0:y1, x0:x1]
        body = labels > 0
        blended = (1 - alpha) * region + alpha * palette[labels].permute(2, 0, 1)
        region[:] = torch.where(body, blended, region)
        region[:] = torch.where(lines, line[:, None, None], region)
    return out.round().clamp(0, 255).to(torch.uint8)
