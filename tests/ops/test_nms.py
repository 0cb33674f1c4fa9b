"""nms / batched_nms: against a plain greedy loop written here, torchvision, and the fallback."""

import importlib
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torchvision

from detzoo.ops.nms import batched_nms, nms

# the module, not the function detzoo.ops re-exports under the same name
nms_module = importlib.import_module("detzoo.ops.nms")

THRESHOLDS = (0.0, 0.5, 0.7, 1.0)
DTYPES = (torch.float32, torch.float64)


# --- references --------------------------------------------------------------------------------


def greedy_nms(boxes: torch.Tensor, scores: torch.Tensor, thr: float) -> torch.Tensor:
    """The definition: visit by decreasing score (ties: lower index), IoU in the boxes' dtype,
    compared with the threshold in float64 (as torchvision's kernel does)."""
    n = len(scores)
    order = sorted(range(n), key=lambda i: (-float(scores[i]), i))
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    suppressed = [False] * n
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        w = (torch.minimum(x2[i], x2) - torch.maximum(x1[i], x1)).clamp(min=0)
        h = (torch.minimum(y2[i], y2) - torch.maximum(y1[i], y1)).clamp(min=0)
        inter = w * h
        over = (inter / (area[i] + area - inter)).double() > thr
        suppressed = [s or o for s, o in zip(suppressed, over.tolist(), strict=True)]
    return torch.tensor(keep, dtype=torch.int64)


def greedy_batched_nms(boxes, scores, idxs, thr: float) -> torch.Tensor:
    kept = []
    for category in set(idxs.tolist()):
        members = torch.where(idxs == category)[0]
        kept += members[greedy_nms(boxes[members], scores[members], thr)].tolist()
    kept.sort(key=lambda i: (-float(scores[i]), i))
    return torch.tensor(kept, dtype=torch.int64)


# --- inputs ------------------------------------------------------------------------------------


def proposals(n: int, seed: int, dtype=torch.float32, size: float = 200.0):
    """Overlapping proposal-like boxes in a size x size image, with a few duplicates, zero-area
    boxes and repeated scores among them."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.rand(n, 2, generator=g, dtype=torch.float64) * size
    sizes = 4 + torch.rand(n, 2, generator=g, dtype=torch.float64) * size / 3
    boxes = torch.cat((centres - sizes / 2, centres + sizes / 2), 1)
    scores = torch.rand(n, generator=g, dtype=torch.float64)
    if n >= 8:
        boxes[1] = boxes[0]  # duplicate box
        boxes[3, 2] = boxes[3, 0]  # zero width
        boxes[5] = boxes[4, :1].repeat(4)  # a point
        scores[6] = scores[7]  # equal scores
        scores[2] = scores[0]
    return boxes.to(dtype), scores.to(dtype)


# --- nms ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 2, 9, 60, 300])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("thr", THRESHOLDS)
def test_nms_matches_greedy_and_torchvision(n, dtype, thr):
    boxes, scores = proposals(n, seed=n, dtype=dtype)
    keep = nms(boxes, scores, thr)
    assert keep.dtype == torch.int64
    torch.testing.assert_close(keep, greedy_nms(boxes, scores, thr), rtol=0, atol=0)
    torch.testing.assert_close(keep, torchvision.ops.nms(boxes, scores, thr), rtol=0, atol=0)


def test_nms_suppresses_only_above_threshold():
    boxes = torch.tensor([[0, 0, 4, 1], [0, 0, 2, 1], [10, 10, 11, 11]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8, 0.7])  # IoU(0, 1) = 2 / 4 = 0.5 exactly
    assert nms(boxes, scores, 0.5).tolist() == [0, 1, 2]
    assert nms(boxes, scores, 0.4999).tolist() == [0, 2]


def test_nms_float32_threshold_compared_in_double():
    # IoU 1/3 in float32 is above the double 1/3 - 1e-12, which rounds to the same float32:
    # suppressed (as torchvision does), though float32(iou) > float32(thr) would be false.
    boxes = torch.tensor([[0, 0, 2, 1], [1, 0, 3, 1]], dtype=torch.float32)
    scores = torch.tensor([0.9, 0.8])
    iou = float(torch.tensor(1.0, dtype=torch.float32) / 3)
    thr = iou - 1e-12
    assert float(torch.tensor(thr, dtype=torch.float32)) == iou
    assert nms(boxes, scores, thr).tolist() == torchvision.ops.nms(boxes, scores, thr).tolist()
    assert nms(boxes, scores, thr).tolist() == [0]
    assert nms(boxes, scores, iou).tolist() == [0, 1]


def test_nms_equal_scores_keep_index_order():
    boxes, _ = proposals(400, seed=3)
    scores = (torch.arange(400) % 4).float()  # many ties
    keep = nms(boxes, scores, 0.5)
    torch.testing.assert_close(keep, torchvision.ops.nms(boxes, scores, 0.5), rtol=0, atol=0)
    torch.testing.assert_close(keep, greedy_nms(boxes, scores, 0.5), rtol=0, atol=0)


@pytest.mark.parametrize("thr", [0.5, 0.7])
def test_nms_many_boxes_blocks_and_threads(thr):
    # More boxes than one block and than one category runs serially (4096): blocked sweeps,
    # compaction and the parallel path; 1 and 2 threads agree with torchvision.
    boxes, scores = proposals(4500, seed=7, size=800.0)
    expected = torchvision.ops.nms(boxes, scores, thr)
    threads = torch.get_num_threads()
    try:
        for t in (1, 2):
            torch.set_num_threads(t)
            torch.testing.assert_close(nms(boxes, scores, thr), expected, rtol=0, atol=0)
    finally:
        torch.set_num_threads(threads)


def test_nms_input_forms():
    boxes, scores = proposals(100, seed=11)
    expected = torchvision.ops.nms(boxes, scores, 0.5)
    wide = torch.zeros(100, 8)
    wide[:, ::2] = boxes  # non-contiguous view
    torch.testing.assert_close(nms(wide[:, ::2], scores, 0.5), expected, rtol=0, atol=0)
    # Scores of another dtype are ordered as they are.
    torch.testing.assert_close(nms(boxes, scores.double(), 0.5), expected, rtol=0, atol=0)
    ranks = torch.empty(100, dtype=torch.int64)  # int64 scores, same order (ties included)
    ranks[scores.sort(descending=True, stable=True).indices] = torch.arange(100, 0, -1)
    torch.testing.assert_close(nms(boxes, ranks, 0.5), expected, rtol=0, atol=0)
    # float16 / bfloat16 boxes are compared in float32.
    for low in (torch.float16, torch.bfloat16):
        b = boxes.to(low)
        ref = torchvision.ops.nms(b.float(), scores, 0.5)
        torch.testing.assert_close(nms(b, scores, 0.5), ref, rtol=0, atol=0)


def test_nms_bad_inputs_say_what_to_do():
    boxes, scores = proposals(5, seed=0)
    with pytest.raises(ValueError, match=r"\[N, 4\].*box_convert"):
        nms(boxes[:, :3], scores, 0.5)
    with pytest.raises(ValueError, match="scores must be a \\[N\\] tensor with N = 5"):
        nms(boxes, scores[:4], 0.5)
    with pytest.raises(TypeError, match="float"):
        nms(boxes.long(), scores, 0.5)
    with pytest.raises(ValueError, match="same device|one device"):
        nms(boxes, scores.to("meta"), 0.5)
    with pytest.raises(RuntimeError, match="boxes must be \\[N, 4\\]"):
        torch.ops.detzoo.nms(boxes[:, :3], scores, 0.5)


# --- batched_nms -------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 1, 9, 80, 400])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("thr", THRESHOLDS)
def test_batched_nms_matches_greedy_and_torchvision(n, dtype, thr):
    boxes, scores = proposals(n, seed=100 + n, dtype=dtype)
    boxes = (boxes * 8).round() / 8  # exact under torchvision's per-category coordinate offsets
    idxs = torch.randint(0, 5, (n,), generator=torch.Generator().manual_seed(n))
    keep = batched_nms(boxes, scores, idxs, thr)
    torch.testing.assert_close(keep, greedy_batched_nms(boxes, scores, idxs, thr), rtol=0, atol=0)
    torch.testing.assert_close(
        keep, torchvision.ops.batched_nms(boxes, scores, idxs, thr), rtol=0, atol=0
    )


def test_batched_nms_categories_never_suppress_each_other():
    boxes = torch.tensor([[0, 0, 10, 10]] * 4, dtype=torch.float32)
    scores = torch.tensor([0.1, 0.4, 0.3, 0.2])
    idxs = torch.tensor([7, -3, 7, 2**40])  # any integer ids
    assert batched_nms(boxes, scores, idxs, 0.5).tolist() == [1, 2, 3]
    assert batched_nms(boxes, scores, idxs.int(), 0.5).tolist() == [1, 2, 3]


def test_batched_nms_large_category_and_ties():
    # One category above the parallel-inside size (4096) plus small ones; repeated scores.
    boxes, scores = proposals(5000, seed=5, size=800.0)
    scores = (scores * 50).round()
    idxs = torch.where(torch.arange(5000) < 4200, 0, torch.arange(5000) % 9 + 1)
    keep = batched_nms(boxes, scores, idxs, 0.6)
    torch.testing.assert_close(keep, greedy_batched_nms(boxes, scores, idxs, 0.6), rtol=0, atol=0)
    # torchvision leaves the order of equal scores open: compare the kept set.
    expected = torchvision.ops.batched_nms(boxes, scores, idxs, 0.6)
    torch.testing.assert_close(keep.sort().values, expected.sort().values, rtol=0, atol=0)


def test_batched_nms_bad_idxs():
    boxes, scores = proposals(5, seed=0)
    with pytest.raises(TypeError, match="integer category ids"):
        batched_nms(boxes, scores, torch.zeros(5), 0.5)
    with pytest.raises(ValueError, match="idxs must be a \\[N\\] tensor"):
        batched_nms(boxes, scores, torch.zeros(4, dtype=torch.int64), 0.5)


# --- fallback, compile, autocast ---------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 7, 500])
def test_fallback_gives_the_kernel_result(n):
    boxes, scores = proposals(n, seed=21)
    idxs = torch.randint(0, 4, (n,), generator=torch.Generator().manual_seed(1))
    for s in (scores, scores.double()):
        torch.testing.assert_close(
            nms_module._nms_torchvision(boxes, s, 0.5), nms(boxes, s, 0.5), rtol=0, atol=0
        )
        torch.testing.assert_close(
            nms_module._batched_nms_torchvision(boxes, s, idxs, 0.5),
            batched_nms(boxes, s, idxs, 0.5),
            rtol=0,
            atol=0,
        )


def test_without_extension_uses_torchvision():
    code = textwrap.dedent(
        """
        import sys, warnings
        sys.modules["detzoo._C"] = None
        warnings.simplefilter("ignore")
        import torch
        from detzoo.ops.nms import batched_nms, nms
        from detzoo.ops._ext import HAS_EXT
        b = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30.0]])
        s = torch.tensor([0.5, 0.9, 0.1])
        per_class = batched_nms(b, s, torch.tensor([0, 1, 0]), 0.5)
        print(HAS_EXT, nms(b, s, 0.5).tolist(), per_class.tolist())
        """
    )
    env = {**os.environ, "DETZOO_REQUIRE_EXT": "0"}
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[0] == "False [1, 2] [1, 0, 2]"


def test_torch_compile_fullgraph_uses_fake_kernels(dynamic_output_shapes):
    boxes, scores = proposals(60, seed=2)
    idxs = torch.arange(60) % 3

    def detect(boxes, scores, idxs):
        keep = nms(boxes, scores, 0.5)
        per_class = batched_nms(boxes, scores, idxs, 0.5)
        return boxes[keep].sum(1), scores[per_class] * 2

    torch._dynamo.reset()
    compiled = torch.compile(detect, fullgraph=True, backend="aot_eager")
    got, expected = compiled(boxes, scores, idxs), detect(boxes, scores, idxs)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=0, atol=0)


def test_autocast_compares_in_float32():
    boxes, scores = proposals(200, seed=9)
    b16, s16 = boxes.bfloat16(), scores.bfloat16()
    idxs = torch.arange(200) % 3
    expected = greedy_nms(b16.float(), s16.float(), 0.5)
    expected_batched = greedy_batched_nms(b16.float(), s16.float(), idxs, 0.5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        keep = nms(b16, s16, 0.5)
        keep_batched = batched_nms(b16, s16, idxs, 0.5)
        keep_half = nms(boxes.half(), scores.half(), 0.5)
    torch.testing.assert_close(keep, expected, rtol=0, atol=0)
    torch.testing.assert_close(keep_batched, expected_batched, rtol=0, atol=0)
    expected_half = greedy_nms(boxes.half().float(), scores.half().float(), 0.5)
    torch.testing.assert_close(keep_half, expected_half, rtol=0, atol=0)


# --- CUDA --------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("n", [0, 1, 63, 64, 65, 1000, 5000])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("thr", THRESHOLDS)
def test_cuda_matches_cpu(n, dtype, thr):
    boxes, scores = proposals(n, seed=n, dtype=dtype, size=600.0)
    scores = (scores * 20).round()  # ties too
    idxs = torch.randint(0, 7, (n,), generator=torch.Generator().manual_seed(n))
    cpu = nms(boxes, scores, thr)
    cuda = nms(boxes.cuda(), scores.cuda(), thr)
    assert cuda.device.type == "cuda"
    torch.testing.assert_close(cuda.cpu(), cpu, rtol=0, atol=0)
    cpu_b = batched_nms(boxes, scores, idxs, thr)
    cuda_b = batched_nms(boxes.cuda(), scores.cuda(), idxs.cuda(), thr)
    torch.testing.assert_close(cuda_b.cpu(), cpu_b, rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_torchvision_and_autocast():
    boxes, scores = proposals(3000, seed=4, size=600.0)
    boxes, scores = boxes.cuda(), scores.cuda()
    expected = torchvision.ops.nms(boxes, scores, 0.7)
    torch.testing.assert_close(nms(boxes, scores, 0.7), expected, rtol=0, atol=0)
    with torch.autocast("cuda", dtype=torch.float16):
        keep = nms(boxes.half(), scores.half(), 0.7)
    ref = nms(boxes.half().float().cpu(), scores.half().float().cpu(), 0.7)
    torch.testing.assert_close(keep.cpu(), ref, rtol=0, atol=0)
