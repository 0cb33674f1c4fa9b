"""nms_rotated's CPU kernel (the blocked sweep shared with nms, a vectorised path for pairs of
axis-aligned boxes, bounding-box rejection before the polygon IoU) against references:

- the independent polygon reference of test_rotated_boxes (pure Python, float64), on boxes at
  0, 90, -90, 180 ... degrees and at random angles, with tied scores and IoUs near the threshold;
- the greedy pass over the kernel's own box_iou_rotated matrix (the same IoU arithmetic), with
  thresholds equal to IoUs that occur, so that every decision must be bit-identical;
- detzoo's axis-aligned nms on the same boxes at angle 0.
"""

import math

import numpy
import pytest
import torch

from detzoo.ops.rotated_boxes import nms_rotated

from .test_rotated_boxes import cxcywh_to_xyxy, proposal_boxes, ref_nms

ALIGNED_ANGLES = (0.0, 90.0, -90.0, 180.0, -180.0, 270.0, 360.0)


def mixed_boxes(n, seed, spread=40.0, dtype=torch.float32, aligned_fraction=0.6):
    """Boxes of 2-17 px in a spread x spread area: a share at multiples of 90 degrees (0, 90,
    -90, 180, -180, 270, 360), the rest at random angles in [-360, 360)."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n, 2, generator=g, dtype=torch.float64) * spread
    sizes = 2 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 15
    angles = torch.rand(n, generator=g, dtype=torch.float64) * 720 - 360
    pick = torch.randint(0, len(ALIGNED_ANGLES), (n,), generator=g)
    aligned = torch.rand(n, generator=g) < aligned_fraction
    angles = torch.where(aligned, torch.tensor(ALIGNED_ANGLES, dtype=torch.float64)[pick], angles)
    return torch.cat((centres, sizes, angles[:, None]), 1).to(dtype)


def tied_scores(n, seed, levels=7):
    """Scores from a few values only, so many boxes tie (order: lower index first)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, levels, (n,), generator=g).float() / levels


def near_threshold_pairs(thr, seed, margin, dtype=torch.float32):
    """Pairs of equal boxes, the second shifted along the first's own x axis so that their IoU
    (w - d) / (w + d) is thr - margin (boxes 4k, 4k + 1) or thr + margin (4k + 2, 4k + 3), for
    the k-th angle; pairs 100 px apart. Scores decrease with the index."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    angles = (*ALIGNED_ANGLES, 33.0, -71.5, 125.0)
    for k, angle in enumerate(angles):
        for m, sign in enumerate((-1.0, 1.0)):
            w = 10 + 20 * float(torch.rand(1, generator=g))
            h = 5 + 20 * float(torch.rand(1, generator=g))
            target = thr + sign * margin
            d = w * (1 - target) / (1 + target)
            a = math.radians(angle)
            cx, cy = 100.0 * k, 100.0 * m
            rows.append((cx, cy, w, h, angle))
            rows.append((cx + d * math.cos(a), cy - d * math.sin(a), w, h, angle))
    boxes = torch.tensor(rows, dtype=torch.float64).to(dtype)
    scores = torch.arange(len(rows), 0, -1, dtype=torch.float32)
    return boxes, scores


class MatrixGreedy:
    """Greedy NMS over the kernel's own IoU matrix: iou(kept box, later box) > thr, where
    box_iou_rotated(a, b)[i, j] is the same rotated::iou(a[i], b[j]) the NMS kernel decides on."""

    def __init__(self, boxes, scores):
        self.order = torch.sort(scores, descending=True, stable=True).indices
        sorted_boxes = boxes[self.order]
        self.iou = torch.ops.detzoo.box_iou_rotated(sorted_boxes, sorted_boxes)

    def __call__(self, thr):
        over = (self.iou > thr).triu(1).numpy()
        suppressed = numpy.zeros(len(self.order), dtype=bool)
        kept = []
        for i in range(len(self.order)):
            if not suppressed[i]:
                kept.append(i)
                suppressed |= over[i]
        return self.order[kept].tolist()


# --- against the independent polygon reference -------------------------------------------------


def with_jittered_copies(boxes, seed):
    """The boxes followed by a copy of each, moved by up to 1 px, resized by up to 10% and
    turned by up to 3 degrees (high IoUs); a quarter of the copies of axis-aligned boxes are
    instead the same rectangle described 90 degrees on, with w and h swapped."""
    g = torch.Generator().manual_seed(seed)
    n = len(boxes)
    copies = boxes.double().clone()
    copies[:, :2] += torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1
    copies[:, 2:4] *= 0.9 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 0.2
    copies[:, 4] += torch.rand(n, generator=g, dtype=torch.float64) * 6 - 3
    aligned = torch.remainder(boxes[:, 4].double(), 90) == 0
    turned = aligned & (torch.rand(n, generator=g) < 0.25)
    copies[aligned, 4] = boxes[aligned, 4].double()
    copies[turned, 2:4] = copies[turned][:, [3, 2]]
    copies[turned, 4] += 90
    return torch.cat((boxes, copies.to(boxes.dtype)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("thr", [0.0, 0.2, 0.5, 0.7, 0.9])
def test_mixed_angles_with_ties_match_polygon_reference(dtype, thr):
    boxes = with_jittered_copies(mixed_boxes(90, 31, dtype=dtype), 34)
    scores = tied_scores(180, 32)
    expected = ref_nms(boxes.double(), scores, thr)
    assert nms_rotated(boxes, scores, thr).tolist() == expected
    assert len(expected) < 175  # the case really suppresses


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_near_threshold_ious_match_polygon_reference(dtype, thr):
    margin = 1e-4 if dtype == torch.float32 else 1e-9
    boxes, scores = near_threshold_pairs(thr, 33, margin, dtype=dtype)
    kept = nms_rotated(boxes, scores, thr).tolist()
    assert kept == ref_nms(boxes.double(), scores, thr)
    # IoU thr + margin suppresses (second box of the first pair at each place), thr - margin not
    expected = sorted(set(range(len(boxes))) - set(range(3, len(boxes), 4)))
    assert sorted(kept) == expected


# --- against the kernel's own IoU matrix: bit-identical decisions -----------------------------


def exact_case(dtype, aligned_fraction):
    boxes = mixed_boxes(700, 41, spread=120, dtype=dtype, aligned_fraction=aligned_fraction)
    boxes[:, 2:4] *= 2  # 4-34 px: many overlaps
    boxes[10:20] = boxes[0:10]  # duplicates (same scores below: the lower index wins)
    boxes[30, 2:4] = -boxes[30, 2:4]  # negative w and h: the same rectangle turned 180 degrees
    boxes[40, 2] = 0.0  # empty boxes
    boxes[41, 3] = 0.0
    boxes[50, 0] = float("nan")
    scores = tied_scores(700, 43, levels=25)
    scores[10:20] = scores[0:10]
    return boxes, scores


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("aligned_fraction", [1.0, 0.7])
def test_decisions_are_bit_identical_to_box_iou_rotated(dtype, aligned_fraction):
    boxes, scores = exact_case(dtype, aligned_fraction)
    # The best box is always kept and tested against every other box: thresholds equal to its
    # IoUs with others (the pair at exactly thr is not suppressed) and the next value below
    # them (the same pair is suppressed) test the `>` of every path, bit for bit.
    order = torch.sort(scores, descending=True, stable=True).indices
    first_row = torch.ops.detzoo.box_iou_rotated(boxes[order[:1]], boxes[order])[0]
    values = first_row[(first_row > 0.02) & (first_row < 0.98)].unique()
    assert len(values) >= 4
    reference = MatrixGreedy(boxes, scores)
    sensitive = 0
    for at in values[torch.linspace(0, len(values) - 1, 12).long().unique()].tolist():
        below = torch.nextafter(torch.tensor(at, dtype=dtype), torch.tensor(0, dtype=dtype)).item()
        kept_at = nms_rotated(boxes, scores, at).tolist()
        kept_below = nms_rotated(boxes, scores, below).tolist()
        assert kept_at == reference(at), at
        assert kept_below == reference(below), below
        sensitive += kept_at != kept_below
    assert sensitive > 0
    for thr in (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0):
        assert nms_rotated(boxes, scores, thr).tolist() == reference(thr), thr


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_negative_threshold_suppresses_like_the_iou_matrix(dtype):
    # IoU 0 > -0.1: every box is suppressed by the first kept one (except NaN IoUs)
    boxes, scores = exact_case(dtype, 0.7)
    reference = MatrixGreedy(boxes, scores)
    for thr in (-0.1, -1.0):
        kept = torch.ops.detzoo.nms_rotated(boxes, scores, thr).tolist()
        assert kept == reference(thr)
        assert len(kept) < 5


# --- angle 0 against axis-aligned nms; threads -------------------------------------------------


@pytest.mark.parametrize("n", [1000, 5000, 20000])
def test_angle_zero_keeps_what_detzoo_nms_keeps(n):
    boxes, scores = proposal_boxes(n, 50 + n)
    for thr in (0.5, 0.7):
        kept = nms_rotated(boxes, scores, thr)
        torch.testing.assert_close(
            kept, torch.ops.detzoo.nms(cxcywh_to_xyxy(boxes), scores, thr), rtol=0, atol=0
        )


@pytest.mark.parametrize("aligned_fraction", [1.0, 0.5])
def test_same_result_on_one_and_two_threads(aligned_fraction):
    boxes = mixed_boxes(9000, 60, spread=700, aligned_fraction=aligned_fraction)
    boxes[:, 2:4] *= 6  # 12-100 px boxes: many overlaps, many blocks
    scores = tied_scores(9000, 61, levels=50)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = nms_rotated(boxes, scores, 0.5)
        torch.set_num_threads(2)
        two = nms_rotated(boxes, scores, 0.5)
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(one, two, rtol=0, atol=0)
    assert 500 < len(one) < 8500
