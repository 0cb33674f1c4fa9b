"""Training and test augmentations: the one module that touches albumentations.

albumentations moves the *pixels* (image, instance masks, ``sem_seg``, DensePose part maps).
The *coordinates* (boxes, keypoints, DensePose points) are mapped here with Detectron2's
continuous-frame formulas, because albumentations uses pixel-index conventions for points
(a flip maps x to ``W - 1 - x``, Detectron2 to ``W - x``) and rejects degenerate boxes instead
of dropping them with their masks. Every augmentation here is axis-aligned (resize, flip, crop,
pad), so the coordinate map is ``x' = sx * x + tx``, ``y' = sy * y + ty`` and is accumulated and
applied once at the end, where boxes are clipped to the image content and boxes that became
empty are dropped together with their masks, keypoints and DensePose annotations.

Random parameters are drawn from torch's generator, which the DataLoader seeds per worker.

A *sample* is the dict a reader builds, all numpy (N instances, K keypoints)::

    image     uint8 [H, W, 3] RGB          boxes    float32 [N, 4] XYXY pixels
    labels    int64 [N]                    iscrowd  int64 [N]
    area      float32 [N] (pixels^2)       masks    uint8 [N, H, W]          (optional)
    keypoints float32 [N, K, 3] (x, y, v)  keypoint_flip_indices list[int]   (with keypoints)
    sem_seg   uint8 [H, W] (255 = ignore)  densepose list of N (dict | None)  (optional)

A DensePose dict (see :mod:`detzoo.data.densepose`) holds ``x``, ``y`` float32 ``[P]`` (image
pixels), ``I`` int64 ``[P]``, ``U``, ``V`` float32 ``[P]``, ``segm`` uint8 ``[S, S]`` (coarse
part index over ``segm_box``) and ``segm_box`` float32 ``[4]`` (XYXY pixels, never clipped).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

import albumentations as A
import cv2
import numpy as np
import torch

from detzoo.structures import clip_boxes, nonempty

from .dataset import Sample

# DensePose's left/right part pairs, swapped by a horizontal flip: fine part index I (1..24)
# and coarse part index (1..14, the order of DensePose-COCO's dp_masks).
_FINE_PART_PAIRS = ((3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (17, 18))
_FINE_PART_PAIRS += ((19, 20), (21, 22))
_COARSE_PART_PAIRS = ((2, 3), (4, 5), (6, 7), (8, 9), (10, 11), (12, 13))


def _swap_table(pairs: Sequence[tuple[int, int]], size: int) -> np.ndarray:
    table = np.arange(size)
    for a, b in pairs:
        table[a], table[b] = b, a
    return table


_FLIPPED_FINE_PART = _swap_table(_FINE_PART_PAIRS, 25)
_FLIPPED_COARSE_PART = _swap_table(_COARSE_PART_PAIRS, 15).astype(np.uint8)


def shortest_edge_size(height: int, width: int, short_edge: int, max_size: int) -> tuple[int, int]:
    """Detectron2's ``ResizeShortestEdge.get_output_shape``: ``(new_h, new_w)`` with the short
    side ``short_edge`` and the long side at most ``max_size``, rounded with ``int(x + 0.5)``."""
    scale = short_edge / min(height, width)
    new_h, new_w = (short_edge, scale * width) if height < width else (scale * height, short_edge)
    if max(new_h, new_w) > max_size:
        scale = max_size / max(new_h, new_w)
        new_h, new_w = new_h * scale, new_w * scale
    return int(new_h + 0.5), int(new_w + 0.5)


@dataclass
class _State:
    """A sample in flight: its pixels so far and the accumulated coordinate map."""

    sample: Sample
    scale: np.ndarray = field(default_factory=lambda: np.ones(2))  # (sx, sy)
    shift: np.ndarray = field(default_factory=lambda: np.zeros(2))  # (tx, ty)
    flipped: bool = False
    content: np.ndarray | None = None  # XYXY of the image content in output pixels

    @property
    def size(self) -> tuple[int, int]:
        return self.sample["image"].shape[:2]

    def apply_pixels(self, transform: A.BasicTransform, sem_seg_transform=None) -> None:
        """Run an albumentations transform on the image, instance masks and ``sem_seg`` (with
        ``sem_seg_transform`` instead when its fill value differs)."""
        sample = self.sample
        sample["image"] = transform(image=sample["image"])["image"]
        height, width = self.size
        if "masks" in sample:
            masks = sample["masks"]
            sample["masks"] = (
                transform(image=masks[0], masks=masks)["masks"]
                if len(masks)
                else np.zeros((0, height, width), np.uint8)
            )
        if "sem_seg" in sample:
            seg = sample["sem_seg"]
            sample["sem_seg"] = (sem_seg_transform or transform)(image=seg, mask=seg)["mask"]

    def map_coords(self, scale: Sequence[float], shift: Sequence[float]) -> None:
        """Compose ``p -> scale * p + shift`` after the map so far."""
        self.scale = self.scale * np.asarray(scale, float)
        self.shift = self.shift * np.asarray(scale, float) + np.asarray(shift, float)


class ResizeShortestEdge:
    """Detectron2's ``ResizeShortestEdge``: the short side becomes one of ``short_edge_length``
    (``sample_style="choice"``) or a value in the ``[min, max]`` range (``"range"``), the long side
    at most ``max_size``; bilinear for images, nearest for masks and ``sem_seg``."""

    def __init__(
        self,
        short_edge_length: int | Sequence[int],
        max_size: int = sys.maxsize,
        sample_style: str = "choice",
    ) -> None:
        lengths = (
            [short_edge_length] if isinstance(short_edge_length, int) else list(short_edge_length)
        )
        if sample_style not in ("choice", "range"):
            raise ValueError(f"sample_style must be 'choice' or 'range', got {sample_style!r}")
        if sample_style == "range" and len(lengths) != 2:
            raise ValueError(f"sample_style='range' needs (min, max), got {lengths}")
        self.lengths, self.max_size, self.sample_style = lengths, max_size, sample_style

    def _short_edge(self) -> int:
        if self.sample_style == "range":
            return int(torch.randint(self.lengths[0], self.lengths[1] + 1, ()))
        return self.lengths[int(torch.randint(len(self.lengths), ()))]

    def __call__(self, state: _State) -> None:
        height, width = state.size
        _resize(state, *shortest_edge_size(height, width, self._short_edge(), self.max_size))


def _resize(state: _State, new_h: int, new_w: int) -> None:
    height, width = state.size
    if (new_h, new_w) == (height, width):
        return
    state.apply_pixels(
        A.Resize(new_h, new_w, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST)
    )
    state.map_coords((new_w / width, new_h / height), (0.0, 0.0))


class RandomFlip:
    """Horizontal flip with probability ``prob``: ``x -> W - x``; keypoints swap left/right by
    the sample's ``keypoint_flip_indices``, DensePose parts swap left/right."""

    def __init__(self, prob: float = 0.5) -> None:
        self.prob = prob

    def __call__(self, state: _State) -> None:
        if float(torch.rand(())) >= self.prob:
            return
        state.apply_pixels(A.HorizontalFlip(p=1.0))
        state.map_coords((-1.0, 1.0), (state.size[1], 0.0))
        state.flipped = not state.flipped


class ResizeScale:
    """Detectron2's ``ResizeScale`` (large-scale jitter): scale the image to fit
    ``scale * (target_height, target_width)`` with ``scale ~ U(min_scale, max_scale)``."""

    def __init__(
        self, min_scale: float, max_scale: float, target_height: int, target_width: int
    ) -> None:
        self.min_scale, self.max_scale = min_scale, max_scale
        self.target = np.array([target_height, target_width], float)

    def __call__(self, state: _State) -> None:
        scale = self.min_scale + float(torch.rand(())) * (self.max_scale - self.min_scale)
        size = np.array(state.size, float)
        output_scale = np.min(self.target * scale / size)
        new_h, new_w = np.round(size * output_scale).astype(int)
        _resize(state, int(new_h), int(new_w))


class FixedSizeCrop:
    """Detectron2's ``FixedSizeCrop``: a random ``crop_size`` window (one uniform offset fraction
    for both axes), then bottom/right padding to ``crop_size`` with ``pad_value`` (image), 0
    (masks) and ``seg_pad_value`` (``sem_seg``)."""

    def __init__(
        self,
        crop_size: tuple[int, int],
        pad_value: float = 128.0,
        seg_pad_value: int = 255,
    ) -> None:
        self.crop_size = np.array(crop_size)
        self.pad_value, self.seg_pad_value = pad_value, seg_pad_value

    def __call__(self, state: _State) -> None:
        height, width = state.size
        max_offset = np.maximum(np.array([height, width]) - self.crop_size, 0)
        y0, x0 = np.round(max_offset * float(torch.rand(()))).astype(int)
        crop_h, crop_w = (int(v) for v in np.minimum(self.crop_size, (height - y0, width - x0)))
        if (crop_h, crop_w) != (height, width):
            state.apply_pixels(A.Crop(int(x0), int(y0), int(x0) + crop_w, int(y0) + crop_h))
            state.map_coords((1.0, 1.0), (-x0, -y0))
        target_h, target_w = (int(v) for v in self.crop_size)
        if (crop_h, crop_w) != (target_h, target_w):
            pad = dict(min_height=target_h, min_width=target_w, position="top_left")
            pad.update(border_mode=cv2.BORDER_CONSTANT, fill=self.pad_value, fill_mask=0)
            seg_pad = A.PadIfNeeded(**{**pad, "fill_mask": self.seg_pad_value})
            state.apply_pixels(A.PadIfNeeded(**pad), sem_seg_transform=seg_pad)


def _intersect(content: np.ndarray, width: int, height: int) -> np.ndarray:
    return clip_boxes(content[None], height, width)[0]


class ColorJitter:
    """Photometric jitter: brightness, contrast and saturation factors drawn uniformly from
    ``[1 - x, 1 + x]`` (Detectron2's ``RandomBrightness``/``Contrast``/``Saturation``)."""

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4):
        self.amounts = (brightness, contrast, saturation)

    def __call__(self, state: _State) -> None:
        factors = [1 + a * (2 * float(torch.rand(())) - 1) for a in self.amounts]
        jitter = A.ColorJitter(*[(f, f) for f in factors], hue=(0.0, 0.0), p=1.0)
        state.sample["image"] = jitter(image=state.sample["image"])["image"]


def _map_points(state: _State, points: np.ndarray) -> np.ndarray:
    return points * state.scale + state.shift


def _map_boxes(state: _State, boxes: np.ndarray) -> np.ndarray:
    corners = _map_points(state, boxes.reshape(-1, 2, 2)).reshape(-1, 4)
    return np.concatenate(
        [np.minimum(corners[:, :2], corners[:, 2:]), np.maximum(corners[:, :2], corners[:, 2:])], 1
    ).astype(np.float32)


def _inside(state: _State, xy: np.ndarray) -> np.ndarray:
    x0, y0, x1, y1 = state.content
    return (xy[..., 0] >= x0) & (xy[..., 0] <= x1) & (xy[..., 1] >= y0) & (xy[..., 1] <= y1)


def _map_keypoints(state: _State, keypoints: np.ndarray, flip_indices: list[int]) -> np.ndarray:
    """Detectron2's ``transform_keypoint_annotations``: points leaving the image become
    unlabeled, a flip permutes left/right, unlabeled points are all zero."""
    out = keypoints.copy()
    out[..., :2] = _map_points(state, keypoints[..., :2])
    out[..., 2][~_inside(state, out[..., :2])] = 0
    if state.flipped:
        out = out[:, flip_indices]
    out[out[..., 2] == 0] = 0
    return out


def _map_densepose(state: _State, annotation: dict | None) -> dict | None:
    if annotation is None:
        return None
    xy = _map_points(state, np.stack([annotation["x"], annotation["y"]], 1))
    keep = _inside(state, xy)
    out = {
        "x": xy[keep, 0].astype(np.float32),
        "y": xy[keep, 1].astype(np.float32),
        "I": annotation["I"][keep],
        "U": annotation["U"][keep],
        "V": annotation["V"][keep],
        "segm": annotation["segm"],
        "segm_box": _map_boxes(state, annotation["segm_box"][None])[0],
    }
    if state.flipped:
        # U, V of the mirrored part would need DensePose's UV symmetry table (a data file of
        # Detectron2's); points keep their U, V and only the part labels swap.
        out["I"] = _FLIPPED_FINE_PART[out["I"]]
        out["segm"] = _FLIPPED_COARSE_PART[out["segm"][:, ::-1]]
    return out


def _finish(state: _State) -> Sample:
    """Map all coordinates, clip boxes to the content, drop instances whose box became empty."""
    sample = state.sample
    x0, y0, x1, y1 = state.content
    boxes = _map_boxes(state, sample["boxes"])
    boxes[:, 0::2] = boxes[:, 0::2].clip(x0, x1)
    boxes[:, 1::2] = boxes[:, 1::2].clip(y0, y1)
    keep = nonempty(boxes, threshold=1e-5)
    sample["boxes"] = boxes[keep]
    sample["area"] = (sample["area"] * abs(state.scale[0] * state.scale[1])).astype(np.float32)
    for key in ("labels", "iscrowd", "area", "masks"):
        if key in sample:
            sample[key] = sample[key][keep]
    if "keypoints" in sample:
        flip = sample.get("keypoint_flip_indices")
        if state.flipped and flip is None:
            raise ValueError("flipping keypoints needs the sample's keypoint_flip_indices")
        sample["keypoints"] = _map_keypoints(state, sample["keypoints"][keep], flip)
    if "densepose" in sample:
        kept = [d for d, k in zip(sample["densepose"], keep) if k]
        sample["densepose"] = [_map_densepose(state, d) for d in kept]
    return sample


class DetectionTransforms:
    """Applies augmentations in order to a sample (see the module docstring) and keeps every
    field consistent. Each augmentation is a callable on the internal state; those in this
    module are :class:`ResizeShortestEdge`, :class:`RandomFlip`, :class:`ResizeScale`,
    :class:`FixedSizeCrop` and :class:`ColorJitter`.

    Args:
        augmentations: applied in order.
        map_targets: transform the annotations with the image (training). With False only the
            image is transformed and the annotations stay in the original image's frame — what
            evaluation compares predictions (mapped back to the original size) against, as
            Detectron2's evaluators read the original annotation files.
    """

    def __init__(self, augmentations: Sequence, map_targets: bool = True) -> None:
        self.augmentations = list(augmentations)
        self.map_targets = map_targets

    def __call__(self, sample: Sample) -> Sample:
        height, width = sample["image"].shape[:2]
        if not self.map_targets:
            state = _State({"image": sample["image"]})
            for augmentation in self.augmentations:
                augmentation(state)
            return {**sample, "image": state.sample["image"]}
        # Annotated boxes may stick out of the image a little; clip them to it first.
        sample = dict(sample, boxes=clip_boxes(sample["boxes"], height, width))
        state = _State(sample, content=np.array([0.0, 0.0, width, height]))
        for augmentation in self.augmentations:
            augmentation(state)
        state.content = _map_boxes(state, np.array([[0.0, 0.0, width, height]]))[0]
        state.content = _intersect(state.content, state.size[1], state.size[0])
        return _finish(state)

    def __repr__(self) -> str:
        return f"DetectionTransforms({self.augmentations}, map_targets={self.map_targets})"


def build_train_transforms(
    min_size: int | Sequence[int] = (640, 672, 704, 736, 768, 800),
    max_size: int = 1333,
    sample_style: str = "choice",
    flip_prob: float = 0.5,
    color_jitter: float = 0.0,
    lsj_size: int | None = None,
    lsj_scale: tuple[float, float] = (0.1, 2.0),
) -> DetectionTransforms:
    """Detectron2's training augmentation: multi-scale shortest-edge resize and horizontal flip.

    Args:
        min_size, max_size, sample_style: :class:`ResizeShortestEdge`'s (Detectron2's
            ``INPUT.MIN_SIZE_TRAIN``, ``MAX_SIZE_TRAIN``, ``MIN_SIZE_TRAIN_SAMPLING``).
        flip_prob: probability of a horizontal flip.
        color_jitter: brightness/contrast/saturation amount (0 = off, Detectron2's default).
        lsj_size: if set, large-scale jitter instead of the shortest-edge resize: resize by
            ``U(*lsj_scale)`` to ``lsj_size`` square, random ``lsj_size`` crop, pad to it.
    """
    if lsj_size is not None:
        geometric = [
            ResizeScale(*lsj_scale, lsj_size, lsj_size),
            FixedSizeCrop((lsj_size, lsj_size)),
        ]
    else:
        geometric = [ResizeShortestEdge(min_size, max_size, sample_style)]
    augmentations = [*geometric, RandomFlip(flip_prob)]
    if color_jitter > 0:
        augmentations.append(ColorJitter(color_jitter, color_jitter, color_jitter))
    return DetectionTransforms(augmentations)


def build_test_transforms(
    min_size: int = 800, max_size: int = 1333, map_targets: bool = False
) -> DetectionTransforms:
    """Deterministic shortest-edge resize (Detectron2's ``INPUT.MIN_SIZE_TEST``/``MAX_SIZE_TEST``).

    By default only the image is resized: the annotations stay in the original image's frame,
    where evaluation compares them with predictions mapped back to ``orig_size`` (see
    :class:`DetectionTransforms`); ``map_targets=True`` resizes them too."""
    return DetectionTransforms([ResizeShortestEdge(min_size, max_size)], map_targets)
