"""paste_masks_in_image cases: Mask R-CNN's test-time output, 100 masks of 28x28 pasted into an
800x1216 image at random boxes of 16-400 px, against Detectron2's two pure-PyTorch algorithms:
its CPU path (one grid_sample per mask over the box's extent, detzoo's fallback) and, for
information, its GPU path (one grid_sample of all masks over the whole image)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timing import Case

from detzoo.ops.paste_masks import _paste_masks_torch, paste_masks_in_image

_N, _MASK, _HEIGHT, _WIDTH, _THRESHOLD = 100, 28, 800, 1216, 0.5


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """[100, 28, 28] mask probabilities and [100, 4] boxes: centres uniform in the image, sides
    uniform in 16-400 px (some boxes reach outside the image)."""
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(_N, _MASK, _MASK, generator=g)
    centres = torch.rand(_N, 2, generator=g) * torch.tensor([float(_WIDTH), float(_HEIGHT)])
    sizes = 16 + torch.rand(_N, 2, generator=g) * 384
    return masks, torch.cat((centres - sizes / 2, centres + sizes / 2), 1)


def _paste_whole_image(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Detectron2's GPU algorithm: every mask sampled over the whole image in one grid_sample."""
    n = len(masks)
    x0, y0, x1, y1 = (c[:, None] for c in boxes.unbind(1))
    gx = (torch.arange(_WIDTH, dtype=torch.float32) + 0.5 - x0) / (x1 - x0) * 2 - 1
    gy = (torch.arange(_HEIGHT, dtype=torch.float32) + 0.5 - y0) / (y1 - y0) * 2 - 1
    grid = torch.stack(
        (gx[:, None, :].expand(n, _HEIGHT, _WIDTH), gy[:, :, None].expand(n, _HEIGHT, _WIDTH)), 3
    )
    return F.grid_sample(masks[:, None], grid, align_corners=False)[:, 0] >= _THRESHOLD


def cases() -> list[Case]:
    masks, boxes = _inputs()
    ours = lambda: paste_masks_in_image(masks, boxes, (_HEIGHT, _WIDTH), _THRESHOLD)
    per_mask = lambda: _paste_masks_torch(masks, boxes, _HEIGHT, _WIDTH, _THRESHOLD)
    differ = int((ours() != per_mask()).sum())
    if differ > 10:  # only pixels within rounding of the threshold may differ
        raise AssertionError(f"paste_masks differs from Detectron2's algorithm at {differ} pixels")
    name = f"paste_masks {_N}x{_MASK}x{_MASK} into {_HEIGHT}x{_WIDTH}"
    return [
        Case(name, ours, per_mask, 3.0, "Detectron2 CPU path (grid_sample per mask)"),
        Case(
            f"{name} (vs whole-image sampling)",
            ours,
            lambda: _paste_whole_image(masks, boxes),
            1.0,
            "Detectron2 GPU path on CPU",
        ),
    ]
