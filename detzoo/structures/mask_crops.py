"""Ground-truth instance masks cropped to boxes and resized to ``M x M``: the Mask R-CNN training
targets, computed as Detectron2's ``BitMasks.crop_and_resize`` (bitmaps) and
``PolygonMasks.crop_and_resize`` (polygons) compute them.

Bitmaps are ROIAligned (aligned, adaptive sampling, threshold 0.5) from the full-image mask.
Polygons are shifted into the box, scaled to ``M x M`` and rasterised there by pycocotools, so the
target keeps the polygon's detail however small the box is (Detectron2's default for COCO,
``INPUT.MASK_FORMAT=polygon``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pycocotools import mask as mask_utils

from detzoo.ops import roi_align

#: One instance's polygons: flat ``[x0, y0, x1, y1, ...]`` coordinates (>= 3 points each), in
#: image pixels, as lists, numpy arrays or tensors.
InstancePolygons = Sequence[Sequence[float] | np.ndarray | torch.Tensor]


#: ground-truth pixels converted to float32 at once by :func:`crop_and_resize_bitmasks` (64 MB)
CHUNK_PIXELS = 1 << 24


def crop_and_resize_bitmasks(
    masks: torch.Tensor, boxes: torch.Tensor, index: torch.Tensor, mask_size: int
) -> torch.Tensor:
    """``masks[index[r]]`` cropped to ``boxes[r]`` and resized to ``mask_size``, for every ``r``.

    Args:
        masks: ``[G, H, W]`` instance bitmaps (bool / uint8 / float, nonzero = inside), image frame.
        boxes: ``[R, 4]`` float XYXY boxes in the same pixels.
        index: int64 ``[R]``, the mask each box is cropped from (values in ``[0, G)``).
        mask_size: ``M``, the side of the output.

    Returns:
        bool ``[R, M, M]``: the ROIAlign average of each ``M x M`` bin (``aligned=True``,
        ``ceil(box side / M)`` samples per bin side, zero outside the image) ``>= 0.5``.

    Detectron2 gathers the matched mask of every box (``[R, H, W]`` float) and pools mask ``r``
    for box ``r``; here each box reads its ground truth directly, converting at most
    :data:`CHUNK_PIXELS` mask pixels to float at a time. The values are the same.
    """
    if boxes.dim() != 2 or boxes.shape[1] != 4 or index.shape != (len(boxes),):
        raise ValueError(
            f"boxes must be [R, 4] and index [R], got {tuple(boxes.shape)} and {tuple(index.shape)}"
        )
    out = torch.zeros(len(boxes), mask_size, mask_size, dtype=torch.bool, device=boxes.device)
    if len(boxes) == 0:
        return out
    if masks.dim() != 3:
        raise ValueError(f"masks must be [G, H, W], got {tuple(masks.shape)}")
    index = index.to(boxes.device)
    used = torch.unique(index)  # sorted
    per_chunk = max(1, CHUNK_PIXELS // max(1, masks.shape[1] * masks.shape[2]))
    for start in range(0, len(used), per_chunk):
        ids = used[start : start + per_chunk]
        selected = torch.isin(index, ids)
        local = torch.searchsorted(ids, index[selected])  # the box's mask within the chunk
        rois = torch.cat([local.to(boxes.dtype)[:, None], boxes[selected]], dim=1).float()
        bitmaps = masks[ids.to(masks.device)][:, None].to(boxes.device, torch.float32)
        crops = roi_align(bitmaps, rois, mask_size, 1.0, sampling_ratio=0, aligned=True)
        out[selected] = crops[:, 0] >= 0.5
    return out


def rasterize_polygons_within_box(
    polygons: InstancePolygons, box: np.ndarray, mask_size: int
) -> np.ndarray:
    """Detectron2's ``rasterize_polygons_within_box``: one instance's polygons, shifted by the box
    corner, scaled by ``mask_size / max(box side, 0.1)`` per axis and rasterised (pycocotools,
    pixel ``(i, j)`` covers ``[j, j + 1) x [i, i + 1)``) into a bool ``[mask_size, mask_size]``.

    Args:
        polygons: the instance's polygons (see :data:`InstancePolygons`), image pixels.
        box: ``[4]`` XYXY box; its side lengths and scale factors are computed in the box's
            dtype (float32 for model boxes) and the coordinates in float64, as in Detectron2.
        mask_size: ``M``.
    """
    if len(polygons) == 0:
        raise ValueError("an instance needs at least one polygon to rasterise")
    box = np.asarray(box)
    w, h = box[2] - box[0], box[3] - box[1]
    ratio_w, ratio_h = mask_size / max(w, 0.1), mask_size / max(h, 0.1)
    scaled = []
    for polygon in polygons:
        p = np.array(polygon, dtype=np.float64).reshape(-1)
        if len(p) < 6 or len(p) % 2:
            raise ValueError(f"a polygon needs an even number (>= 6) of coordinates, got {len(p)}")
        p[0::2] = (p[0::2] - box[0]) * ratio_w
        p[1::2] = (p[1::2] - box[1]) * ratio_h
        scaled.append(p)
    rle = mask_utils.merge(mask_utils.frPyObjects(scaled, mask_size, mask_size))
    return mask_utils.decode(rle).astype(bool)


def crop_and_resize_polygons(
    polygons: Sequence[InstancePolygons], boxes: torch.Tensor, index: torch.Tensor, mask_size: int
) -> torch.Tensor:
    """``polygons[index[r]]`` rasterised within ``boxes[r]`` (see
    :func:`rasterize_polygons_within_box`) for every ``r``: bool ``[R, M, M]`` on ``boxes``' device.

    Args:
        polygons: ``G`` instances' polygons, image pixels.
        boxes: ``[R, 4]`` float XYXY boxes.
        index: int64 ``[R]`` in ``[0, G)``.
        mask_size: ``M``.
    """
    if boxes.dim() != 2 or boxes.shape[1] != 4 or index.shape != (len(boxes),):
        raise ValueError(
            f"boxes must be [R, 4] and index [R], got {tuple(boxes.shape)} and {tuple(index.shape)}"
        )
    out = np.zeros((len(boxes), mask_size, mask_size), dtype=bool)
    # Polygons live on the CPU; rasterising them is a per-instance loop, as in Detectron2.
    for r, (box, i) in enumerate(zip(boxes.detach().cpu().numpy(), index.tolist())):
        out[r] = rasterize_polygons_within_box(polygons[i], box, mask_size)
    return torch.from_numpy(out).to(boxes.device)
