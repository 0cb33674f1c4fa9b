"""box_iou_rotated / nms_rotated: hand-computed cases, an independent polygon reference written
here, the plain-PyTorch fallback, torch.compile (fake kernels), autocast and CUDA parity."""

import math

import pytest
import torch
import torchvision

from detzoo.ops import rotated_boxes as rb
from detzoo.ops.rotated_boxes import batched_nms_rotated, nms_rotated, pairwise_iou_rotated

# --- independent reference: corners (Detectron2's convention), edge crossings + contained
# --- corners, monotone-chain convex hull, shoelace; pure Python float64.


def _corners(box):
    cx, cy, w, h, angle = (float(v) for v in box)
    c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    # Counter-clockwise in image coordinates (y down): the box's x axis is (c, -s).
    return [
        (cx + dx * c + dy * s, cy - dx * s + dy * c)
        for dx, dy in ((w / 2, h / 2), (-w / 2, h / 2), (-w / 2, -h / 2), (w / 2, -h / 2))
    ]


def _cross(o, a, b):
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def _inside(p, poly, eps=1e-9):
    signs = [_cross(poly[i], poly[(i + 1) % 4], p) for i in range(4)]
    return all(x >= -eps for x in signs) or all(x <= eps for x in signs)


def _segment_crossing(p1, p2, q1, q2):
    d = (p2[0] - p1[0]) * (q2[1] - q1[1]) - (p2[1] - p1[1]) * (q2[0] - q1[0])
    if abs(d) < 1e-15:
        return None
    t = ((q1[0] - p1[0]) * (q2[1] - q1[1]) - (q1[1] - p1[1]) * (q2[0] - q1[0])) / d
    u = ((q1[0] - p1[0]) * (p2[1] - p1[1]) - (q1[1] - p1[1]) * (p2[0] - p1[0])) / d
    if -1e-12 <= t <= 1 + 1e-12 and -1e-12 <= u <= 1 + 1e-12:
        return (p1[0] + t * (p2[0] - p1[0]), p1[1] + t * (p2[1] - p1[1]))
    return None


def _hull_area(points):
    pts = sorted(set(points))
    if len(pts) < 3:
        return 0.0
    lower, upper = [], []
    for p in pts:
        while len(lower) >= 2 and _cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    for p in reversed(pts):
        while len(upper) >= 2 and _cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    hull = lower[:-1] + upper[:-1]
    twice = sum(
        hull[i][0] * hull[(i + 1) % len(hull)][1] - hull[(i + 1) % len(hull)][0] * hull[i][1]
        for i in range(len(hull))
    )
    return abs(twice) / 2


def ref_iou(b1, b2):
    area1, area2 = float(b1[2] * b1[3]), float(b2[2] * b2[3])
    if area1 < 1e-14 or area2 < 1e-14:
        return 0.0
    p, q = _corners(b1), _corners(b2)
    pts = [x for x in p if _inside(x, q)] + [x for x in q if _inside(x, p)]
    for i in range(4):
        for j in range(4):
            x = _segment_crossing(p[i], p[(i + 1) % 4], q[j], q[(j + 1) % 4])
            if x is not None:
                pts.append(x)
    inter = _hull_area(pts)
    return inter / (area1 + area2 - inter)


def ref_iou_matrix(boxes1, boxes2):
    return torch.tensor(
        [[ref_iou(a.tolist(), b.tolist()) for b in boxes2] for a in boxes1], dtype=torch.float64
    ).reshape(len(boxes1), len(boxes2))


def ref_nms(boxes, scores, thr):
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    kept = []
    for i in order:
        if all(ref_iou(boxes[k].tolist(), boxes[i].tolist()) <= thr for k in kept):
            kept.append(i)
    return kept


def random_boxes(n, seed, spread=20.0, dtype=torch.float32, angles=True):
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n, 2, generator=g, dtype=torch.float64) * spread
    sizes = 2 + torch.rand(n, 2, generator=g, dtype=torch.float64) * 15
    angle = torch.rand(n, 1, generator=g, dtype=torch.float64) * 720 - 360
    if not angles:
        angle.zero_()
    return torch.cat((centres, sizes, angle), 1).to(dtype)


def proposal_boxes(n, seed, dtype=torch.float32):
    """Centres uniform in a 1216 x 800 image, sizes 16-256 px, angle 0, random scores."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n, 2, generator=g) * torch.tensor([1216.0, 800.0])
    sizes = 16 + torch.rand(n, 2, generator=g) * 240
    boxes = torch.cat((centres, sizes, torch.zeros(n, 1)), 1).to(dtype)
    return boxes, torch.rand(n, generator=g)


def cxcywh_to_xyxy(boxes):
    return torch.cat((boxes[:, :2] - boxes[:, 2:4] / 2, boxes[:, :2] + boxes[:, 2:4] / 2), 1)


def iou1(b1, b2, dtype=torch.float64):
    return pairwise_iou_rotated(torch.tensor([b1], dtype=dtype), torch.tensor([b2], dtype=dtype))[
        0, 0
    ].item()


# --- hand-computed IoUs ------------------------------------------------------------------------

C30, S30 = math.cos(math.radians(30)), math.sin(math.radians(30))
# Two strips of width 2 crossing at 60 degrees overlap in a rhombus of area 2 * 2 / sin(60).
RHOMBUS = 4 / math.sin(math.radians(60))
HAND_CASES = [
    # identical boxes, axis-aligned and rotated
    ((5, 5, 4, 2, 0), (5, 5, 4, 2, 0), 1.0),
    ((5, 5, 4, 2, 33), (5, 5, 4, 2, 33), 1.0),
    # disjoint, and merely touching
    ((0, 0, 2, 2, 0), (10, 0, 2, 2, 0), 0.0),
    ((0, 0, 2, 2, 20), (10, 10, 2, 2, 70), 0.0),
    ((0, 0, 2, 2, 0), (2, 0, 2, 2, 0), 0.0),
    # a square and itself turned 45 degrees: regular octagon, IoU 1/sqrt(2)
    ((0, 0, 6, 6, 0), (0, 0, 6, 6, 45), 1 / math.sqrt(2)),
    ((3, 7, 6, 6, 10), (3, 7, 6, 6, 55), 1 / math.sqrt(2)),
    # 90 degrees swaps w and h; 180 and -360 change nothing
    ((0, 0, 4, 2, 90), (0, 0, 2, 4, 0), 1.0),
    ((0, 0, 4, 2, -270), (0, 0, 2, 4, 180), 1.0),
    ((0, 0, 4, 2, 0), (0, 0, 4, 2, 90), 4 / 12),
    ((0, 0, 4, 2, 0), (0, 0, 4, 2, 180), 1.0),
    # crossing strips: at right angles (2 x 2 square), at 60 degrees (rhombus 4 / sin 60)
    ((0, 0, 10, 2, 0), (0, 0, 10, 2, 90), 4 / 36),
    ((0, 0, 10, 2, 30), (0, 0, 10, 2, 120), 4 / 36),
    ((0, 0, 20, 2, 0), (0, 0, 20, 2, 60), RHOMBUS / (80 - RHOMBUS)),
    # half-overlapping squares, shifted along their own (rotated) x axis (c, -s): IoU 8 / 24
    ((0, 0, 4, 4, 0), (2, 0, 4, 4, 0), 1 / 3),
    ((0, 0, 4, 4, 30), (2 * C30, -2 * S30, 4, 4, 30), 1 / 3),
    # a box inside another
    ((0, 0, 10, 10, 17), (0, 0, 2, 2, 40), 4 / 100),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("b1", "b2", "expected"), HAND_CASES)
def test_hand_computed_iou(b1, b2, expected, dtype):
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert iou1(b1, b2, dtype) == pytest.approx(expected, abs=tol)
    assert iou1(b2, b1, dtype) == pytest.approx(expected, abs=tol)
    assert ref_iou(b1, b2) == pytest.approx(expected, abs=1e-9)  # the reference agrees


def test_angle_is_counter_clockwise_in_image_coordinates():
    # A long thin box at +45 degrees points up-right on screen (towards -y) ...
    strip = (0, 0, 100, 2, 45)
    assert iou1(strip, (30, -30, 4, 4, 0)) > 0
    # ... and not down-right.
    assert iou1(strip, (30, 30, 4, 4, 0)) == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_area_boxes_give_zero(dtype):
    boxes = torch.tensor(
        [[5, 5, 0, 3, 0], [5, 5, 3, 0, 30], [5, 5, 0, 0, 0], [5, 5, 3, 3, 0]], dtype=dtype
    )
    iou = pairwise_iou_rotated(boxes, boxes)
    expected = torch.zeros(4, 4, dtype=dtype)
    expected[3, 3] = 1
    torch.testing.assert_close(iou, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_empty_inputs(dtype):
    some = random_boxes(3, 0, dtype=dtype)
    none = some[:0]
    assert pairwise_iou_rotated(none, some).shape == (0, 3)
    assert pairwise_iou_rotated(some, none).shape == (3, 0)
    assert pairwise_iou_rotated(none, none).dtype == dtype
    kept = nms_rotated(none, torch.zeros(0, dtype=dtype), 0.5)
    assert kept.shape == (0,) and kept.dtype == torch.int64
    assert batched_nms_rotated(
        none, torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5
    ).shape == (0,)


# --- random boxes against the independent reference --------------------------------------------


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_random_iou_matches_reference(dtype, tol):
    boxes1, boxes2 = random_boxes(30, 1, dtype=dtype), random_boxes(25, 2, dtype=dtype)
    iou = pairwise_iou_rotated(boxes1, boxes2)
    assert iou.dtype == dtype
    expected = ref_iou_matrix(boxes1.double(), boxes2.double())
    assert (expected > 0.05).sum() > 100  # the case really exercises overlaps
    torch.testing.assert_close(iou.double(), expected, atol=tol, rtol=0)


def test_far_from_origin_keeps_float32_precision():
    near = random_boxes(20, 3)
    far = near.clone()
    far[:, :2] += 1.0e5  # float32 ulp at 1e5 is ~0.008 px; only centre differences matter
    expected = ref_iou_matrix(far.double(), far.double())
    torch.testing.assert_close(pairwise_iou_rotated(far, far).double(), expected, atol=2e-4, rtol=0)


def test_axis_aligned_iou_matches_torchvision():
    boxes = random_boxes(40, 4, angles=False)
    for angle in (0.0, 180.0, -360.0):
        boxes[:, 4] = angle
        expected = torchvision.ops.box_iou(cxcywh_to_xyxy(boxes), cxcywh_to_xyxy(boxes))
        torch.testing.assert_close(pairwise_iou_rotated(boxes, boxes), expected, atol=1e-6, rtol=0)
    turned = boxes.clone()
    turned[:, 2:4] = boxes[:, [3, 2]]
    turned[:, 4] = 90.0
    torch.testing.assert_close(pairwise_iou_rotated(turned, boxes), expected, atol=1e-6, rtol=0)


def test_half_precision_inputs_are_upcast():
    boxes = random_boxes(10, 5)
    iou = pairwise_iou_rotated(boxes.half(), boxes.bfloat16())
    assert iou.dtype == torch.float32
    expected = ref_iou_matrix(boxes.half().double(), boxes.bfloat16().double())
    torch.testing.assert_close(iou.double(), expected, atol=1e-5, rtol=0)


def test_bad_inputs_raise_clear_errors():
    good = random_boxes(3, 0)
    with pytest.raises(ValueError, match=r"\[N, 5\]"):
        pairwise_iou_rotated(good[:, :4], good)
    with pytest.raises(TypeError, match="floating"):
        pairwise_iou_rotated(good.long(), good)
    with pytest.raises(ValueError, match="scores"):
        nms_rotated(good, torch.zeros(4), 0.5)
    with pytest.raises(ValueError, match="idxs"):
        batched_nms_rotated(good, torch.zeros(3), torch.zeros(2, dtype=torch.long), 0.5)
    with pytest.raises(RuntimeError, match="float32 or float64"):
        torch.ops.detzoo.box_iou_rotated(good.half(), good.half())
    with pytest.raises(RuntimeError, match=r"\[N, 5\]"):
        torch.ops.detzoo.nms_rotated(good[:, :4], torch.zeros(3), 0.5)


# --- nms_rotated --------------------------------------------------------------------------------


def test_nms_rotated_hand_case():
    boxes = torch.tensor(
        [
            [0, 0, 10, 10, 0],  # kept (highest score)
            [0, 0, 10, 10, 10],  # IoU ~0.85 with box 0: suppressed
            [0, 0, 10, 10, 45],  # IoU 1/sqrt(2) with box 0 > 0.7: suppressed
            [50, 50, 10, 10, 30],  # far away: kept
            [50, 50, 10, 10, 30],  # duplicate of 3 with a lower score: suppressed
            [0, 0, 10, 10, 90],  # identical to box 0 with the same score: suppressed (later index)
        ],
        dtype=torch.float32,
    )
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.9])
    assert nms_rotated(boxes, scores, 0.7).tolist() == [0, 3]
    assert nms_rotated(boxes, scores, 0.72).tolist() == [0, 2, 3]  # 0.7071 no longer suppresses


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nms_rotated_matches_reference(dtype):
    boxes = random_boxes(60, 6, spread=40, dtype=dtype)
    scores = torch.rand(60, generator=torch.Generator().manual_seed(7))
    for thr in (0.1, 0.3, 0.6):
        assert nms_rotated(boxes, scores, thr).tolist() == ref_nms(boxes.double(), scores, thr)


def test_nms_rotated_at_angle_zero_matches_torchvision_nms():
    boxes, scores = proposal_boxes(2000, 8)
    kept = nms_rotated(boxes, scores, 0.7)
    torch.testing.assert_close(
        kept, torchvision.ops.nms(cxcywh_to_xyxy(boxes), scores, 0.7), rtol=0, atol=0
    )


def test_nms_rotated_same_result_on_one_and_two_threads():
    # Large enough for the parallel inner loop of the CPU kernel.
    boxes, scores = proposal_boxes(6000, 9)
    boxes[:, 4] = torch.rand(6000, generator=torch.Generator().manual_seed(1)) * 360
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = nms_rotated(boxes, scores, 0.5)
        torch.set_num_threads(2)
        two = nms_rotated(boxes, scores, 0.5)
    finally:
        torch.set_num_threads(previous)
    torch.testing.assert_close(one, two, rtol=0, atol=0)


def test_batched_nms_rotated_separates_categories_and_keeps_input():
    boxes = random_boxes(80, 10, spread=30)
    boxes[:5, 2:4] = 300.0  # big boxes, whose rotated extent exceeds max(w, h) / 2
    boxes[:5, 4] = 45.0
    scores = torch.rand(80, generator=torch.Generator().manual_seed(11))
    idxs = torch.randint(0, 4, (80,), generator=torch.Generator().manual_seed(12))
    original = boxes.clone()
    kept = batched_nms_rotated(boxes, scores, idxs, 0.4)
    torch.testing.assert_close(boxes, original, rtol=0, atol=0)
    expected = torch.cat(
        [
            torch.nonzero(idxs == c)[:, 0][nms_rotated(boxes[idxs == c], scores[idxs == c], 0.4)]
            for c in range(4)
        ]
    )
    expected = expected[torch.sort(scores[expected], descending=True, stable=True).indices]
    assert sorted(kept.tolist()) == sorted(expected.tolist())
    assert torch.all(scores[kept][:-1] >= scores[kept][1:])
    # identical boxes in two categories are both kept
    two = torch.tensor([[5.0, 5, 4, 4, 30], [5.0, 5, 4, 4, 30]])
    assert batched_nms_rotated(
        two, torch.tensor([0.9, 0.8]), torch.tensor([0, 1]), 0.5
    ).tolist() == [0, 1]
    assert batched_nms_rotated(
        two, torch.tensor([0.9, 0.8]), torch.tensor([1, 1]), 0.5
    ).tolist() == [0]


# --- the plain-PyTorch fallback equals the kernel ----------------------------------------------


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_fallback_iou_equals_kernel(dtype, tol):
    boxes1, boxes2 = random_boxes(70, 13, dtype=dtype), random_boxes(50, 14, dtype=dtype)
    boxes1[::7, 4] = 90.0  # axis-aligned fast path of the kernel
    boxes2[::5, 4] = -180.0
    boxes1[3, 2] = 0.0  # zero area
    kernel = torch.ops.detzoo.box_iou_rotated(boxes1, boxes2)
    fallback = rb._pairwise_iou_rotated_torch(boxes1, boxes2)
    assert fallback.dtype == dtype
    torch.testing.assert_close(fallback, kernel, atol=tol, rtol=0)
    assert rb._pairwise_iou_rotated_torch(boxes1[:0], boxes2).shape == (0, 50)


def test_fallback_nms_equals_kernel():
    boxes = random_boxes(200, 15, spread=60)
    scores = torch.rand(200, generator=torch.Generator().manual_seed(16))
    for thr in (0.2, 0.5):
        kernel = torch.ops.detzoo.nms_rotated(boxes, scores, thr)
        torch.testing.assert_close(
            rb._nms_rotated_torch(boxes, scores, thr), kernel, rtol=0, atol=0
        )


def test_public_functions_take_the_fallback_without_extension(monkeypatch):
    boxes = random_boxes(40, 27, spread=30)
    scores = torch.rand(40, generator=torch.Generator().manual_seed(28))
    idxs = torch.randint(0, 3, (40,), generator=torch.Generator().manual_seed(29))
    with_ext = (
        pairwise_iou_rotated(boxes, boxes),
        nms_rotated(boxes, scores, 0.3),
        batched_nms_rotated(boxes, scores, idxs, 0.3),
    )
    monkeypatch.setattr(rb, "HAS_EXT", False)
    monkeypatch.setattr(torch.ops.detzoo, "box_iou_rotated", None)  # must not be reached
    monkeypatch.setattr(torch.ops.detzoo, "nms_rotated", None)
    torch.testing.assert_close(pairwise_iou_rotated(boxes, boxes), with_ext[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(nms_rotated(boxes, scores, 0.3), with_ext[1], rtol=0, atol=0)
    torch.testing.assert_close(
        batched_nms_rotated(boxes, scores, idxs, 0.3), with_ext[2], rtol=0, atol=0
    )


# --- torch.compile (fake kernels) and autocast -------------------------------------------------


def test_compile_fullgraph_uses_fake_kernels(dynamic_output_shapes):

    def iou_then_nms(boxes, scores):
        iou = torch.ops.detzoo.box_iou_rotated(boxes, boxes)
        kept = torch.ops.detzoo.nms_rotated(boxes, scores, 0.5)
        return iou.sum(1), kept + 0

    def public(boxes, scores, idxs):
        return pairwise_iou_rotated(boxes, boxes), batched_nms_rotated(boxes, scores, idxs, 0.5)

    boxes = random_boxes(30, 17, spread=30)
    scores = torch.rand(30, generator=torch.Generator().manual_seed(18))
    idxs = torch.randint(0, 3, (30,), generator=torch.Generator().manual_seed(19))
    torch._dynamo.reset()
    compiled = torch.compile(iou_then_nms, fullgraph=True, backend="aot_eager")
    for got, want in zip(compiled(boxes, scores), iou_then_nms(boxes, scores), strict=True):
        torch.testing.assert_close(got, want)
    compiled_public = torch.compile(public, fullgraph=True, backend="aot_eager")
    for got, want in zip(
        compiled_public(boxes, scores, idxs), public(boxes, scores, idxs), strict=True
    ):
        torch.testing.assert_close(got, want)


def test_autocast_runs_in_float32():
    boxes = random_boxes(20, 20, spread=30)
    scores = torch.rand(20, generator=torch.Generator().manual_seed(21))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        iou = torch.ops.detzoo.box_iou_rotated(boxes.bfloat16(), boxes.bfloat16())
        kept = torch.ops.detzoo.nms_rotated(boxes.bfloat16(), scores.bfloat16(), 0.5)
        public = pairwise_iou_rotated(boxes, boxes)
    assert iou.dtype == torch.float32 and public.dtype == torch.float32
    torch.testing.assert_close(
        iou, pairwise_iou_rotated(boxes.bfloat16().float(), boxes.bfloat16().float())
    )
    torch.testing.assert_close(public, pairwise_iou_rotated(boxes, boxes))
    assert kept.dtype == torch.int64 and len(kept) > 0


# --- CUDA parity -------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-12)])
def test_cuda_iou_matches_cpu(dtype, tol):
    boxes1, boxes2 = random_boxes(333, 22, dtype=dtype), random_boxes(77, 23, dtype=dtype)
    boxes1[::7, 4] = 90.0
    boxes1[3, 2] = 0.0
    cuda = torch.ops.detzoo.box_iou_rotated(boxes1.cuda(), boxes2.cuda())
    torch.testing.assert_close(
        cuda.cpu(), torch.ops.detzoo.box_iou_rotated(boxes1, boxes2), atol=tol, rtol=0
    )
    assert torch.ops.detzoo.box_iou_rotated(boxes1[:0].cuda(), boxes2.cuda()).shape == (0, 77)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 3000])
def test_cuda_nms_matches_cpu(n):
    boxes, scores = proposal_boxes(n, 24)
    boxes[:, 4] = torch.rand(n, generator=torch.Generator().manual_seed(25)) * 360
    cpu = torch.ops.detzoo.nms_rotated(boxes, scores, 0.5)
    cuda = torch.ops.detzoo.nms_rotated(boxes.cuda(), scores.cuda(), 0.5)
    assert cuda.device.type == "cuda"
    torch.testing.assert_close(cuda.cpu(), cpu, rtol=0, atol=0)
    idxs = torch.randint(0, 5, (n,), generator=torch.Generator().manual_seed(26))
    torch.testing.assert_close(
        batched_nms_rotated(boxes.cuda(), scores.cuda(), idxs.cuda(), 0.5).cpu(),
        batched_nms_rotated(boxes, scores, idxs, 0.5),
        rtol=0,
        atol=0,
    )
