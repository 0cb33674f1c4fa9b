"""Keypoints <-> per-ROI heatmaps, as Detectron2's ``structures/keypoints.py`` encodes training
targets (``_keypoints_to_heatmap``) and decodes predictions (``heatmaps_to_keypoints``).

Both use Heckbert's pixel convention: the continuous coordinate ``c`` lies in discrete cell
``d = floor(c)``, whose centre is ``c = d + 0.5``. Boxes and keypoints are in the same continuous
pixel frame (COCO's integer keypoint indices get +0.5 when read, see
:class:`detzoo.data.CocoKeypoints`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def keypoints_to_heatmap(
    keypoints: torch.Tensor, rois: torch.Tensor, heatmap_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The heatmap cell of each keypoint inside its ROI (Detectron2's ``_keypoints_to_heatmap``).

    A keypoint at ``x`` in an ROI ``[x0, x1)`` falls in column ``floor((x - x0) * S / (x1 - x0))``;
    a keypoint exactly on the ROI's right (bottom) edge goes to the last column (row). It is a
    training target only when that cell is inside the ``S x S`` heatmap and it is labelled
    (visibility ``> 0``: hidden-but-labelled points count, as in Detectron2).

    Args:
        keypoints: float ``[N, K, 3]`` (x, y, visibility), input pixels.
        rois: float ``[N, 4]`` XYXY boxes, input pixels, one per keypoint set.
        heatmap_size: ``S``, the heatmap side.

    Returns:
        ``heatmaps`` int64 ``[N, K]``: the flat cell index ``y * S + x`` in ``[0, S*S)``, 0 where
        not valid; ``valid`` bool ``[N, K]``.
    """
    if keypoints.dim() != 3 or keypoints.shape[2] != 3:
        raise ValueError(f"keypoints must be [N, K, 3], got shape {tuple(keypoints.shape)}")
    if rois.shape != (len(keypoints), 4):
        raise ValueError(
            f"need one [4] box per keypoint set: {len(keypoints)} keypoint sets, rois of shape "
            f"{tuple(rois.shape)}"
        )
    if rois.numel() == 0:
        empty = keypoints.new_zeros(keypoints.shape[:2], dtype=torch.int64)
        return empty, empty.bool()
    offset_x, offset_y = rois[:, 0:1], rois[:, 1:2]
    scale_x = heatmap_size / (rois[:, 2:3] - rois[:, 0:1])
    scale_y = heatmap_size / (rois[:, 3:4] - rois[:, 1:2])
    x, y = keypoints[..., 0], keypoints[..., 1]
    on_right_edge = x == rois[:, 2:3]
    on_bottom_edge = y == rois[:, 3:4]
    x = ((x - offset_x) * scale_x).floor().long()
    y = ((y - offset_y) * scale_y).floor().long()
    x[on_right_edge] = heatmap_size - 1
    y[on_bottom_edge] = heatmap_size - 1
    inside = (x >= 0) & (y >= 0) & (x < heatmap_size) & (y < heatmap_size)
    valid = inside & (keypoints[..., 2] > 0)
    return (y * heatmap_size + x) * valid, valid


@torch.no_grad()
def heatmaps_to_keypoints(maps: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
    """Keypoint positions and scores from heatmap logits (Detectron2's ``heatmaps_to_keypoints``).

    Each ROI's ``[K, S, S]`` logits are resized bicubically to the box's size in whole pixels
    (``ceil`` of its width and height, at least 1); the argmax cell ``(i, j)`` gives
    ``x = x0 + (j + 0.5) * w / ceil(w)`` (likewise y), i.e. the cell centre scaled back to the box.
    The score is Detectron2's: the argmax's softmax value over the *resized* map normalised by the
    sum over the ``S x S`` logits, ``1 / sum(exp(logits - max_resized))``, which keeps scores of
    boxes of different sizes comparable.

    Args:
        maps: float ``[R, K, S, S]`` heatmap logits.
        rois: float ``[R, 4]`` XYXY boxes, input pixels.

    Returns:
        float32 ``[R, K, 4]``: (x, y, logit at the argmax, score). Detectron2's predictions keep
        (x, y, score).
    """
    maps = maps.float()
    rois = rois.float()
    num_rois, num_keypoints = maps.shape[:2]
    out = maps.new_zeros(num_rois, num_keypoints, 4)
    widths = (rois[:, 2] - rois[:, 0]).clamp(min=1)
    heights = (rois[:, 3] - rois[:, 1]).clamp(min=1)
    widths_ceil, heights_ceil = widths.ceil(), heights.ceil()
    width_corrections = widths / widths_ceil
    height_corrections = heights / heights_ceil
    keypoint_index = torch.arange(num_keypoints, device=maps.device)
    # One interpolation per ROI: every box has its own output size (read once: no device sync
    # per ROI).
    sizes = torch.stack([heights_ceil, widths_ceil], dim=1).long().tolist()
    for i in range(num_rois):
        size = tuple(sizes[i])
        roi_map = F.interpolate(maps[[i]], size=size, mode="bicubic", align_corners=False)[0]
        flat = roi_map.view(num_keypoints, -1)
        max_logit = flat.max(1).values.view(num_keypoints, 1, 1)
        pos = flat.argmax(1)
        x_int = pos % size[1]
        y_int = (pos - x_int) // size[1]
        # exp(roi_map - max) is exactly 1 at the argmax, so the score is 1 / the normaliser.
        normaliser = (maps[i] - max_logit).exp_().sum((1, 2))
        out[i, :, 0] = (x_int.float() + 0.5) * width_corrections[i] + rois[i, 0]
        out[i, :, 1] = (y_int.float() + 0.5) * height_corrections[i] + rois[i, 1]
        out[i, :, 2] = roi_map[keypoint_index, y_int, x_int]
        out[i, :, 3] = 1.0 / normaliser
    return out
