"""paste_masks_in_image against a full-image F.grid_sample reference, hand-computed values, and the
fallback."""

import math

import pytest
import torch
import torch.nn.functional as F

from detzoo.ops import _ext
from detzoo.ops.paste_masks import _paste_masks_torch, paste_masks_in_image

NEAR = 1e-6  # pixels this close to the threshold may round either way


def extent(box: list[float], height: int, width: int) -> tuple[int, int, int, int]:
    """Detectron2's skip-empty region [x_begin, x_end) x [y_begin, y_end) of one box."""
    if any(math.isnan(v) for v in box):
        return 0, 0, 0, 0

    def begin(v: float, size: int) -> int:
        v = math.floor(v) - 1 if math.isfinite(v) else v
        return int(min(max(v, 0), size))

    def end(v: float, size: int) -> int:
        v = math.ceil(v) + 1 if math.isfinite(v) else v
        return int(min(max(v, 0), size))

    return begin(box[0], width), end(box[2], width), begin(box[1], height), end(box[3], height)


def reference_values(masks, boxes, height, width):
    """Detectron2's grid, sampled by F.grid_sample over the whole image, zeroed outside each box's
    extent; in float64 when masks or boxes are float64, else float32."""
    dtype = torch.float64 if torch.float64 in (masks.dtype, boxes.dtype) else torch.float32
    masks, boxes = masks.to(dtype), boxes.to(dtype)
    n = len(masks)
    x0, y0, x1, y1 = (c[:, None] for c in boxes.unbind(1))
    gx = (torch.arange(width, dtype=dtype) + 0.5 - x0) / (x1 - x0) * 2 - 1
    gy = (torch.arange(height, dtype=dtype) + 0.5 - y0) / (y1 - y0) * 2 - 1
    grid = torch.stack(
        (gx[:, None, :].expand(n, height, width), gy[:, :, None].expand(n, height, width)), 3
    )
    values = F.grid_sample(masks[:, None], grid, align_corners=False)[:, 0]
    inside = torch.zeros(n, height, width, dtype=torch.bool)
    for k, box in enumerate(boxes.tolist()):
        xb, xe, yb, ye = extent(box, height, width)
        inside[k, yb:ye, xb:xe] = True
    return torch.where(inside, values, torch.zeros((), dtype=dtype))


def assert_pasted(out, values, threshold):
    """``out`` equals the thresholded (or *255) reference values, except within NEAR of a rounding
    boundary."""
    if threshold >= 0:
        assert out.dtype == torch.bool
        expected = values >= threshold
        near = (values - threshold).abs() < NEAR
    else:
        assert out.dtype == torch.uint8
        expected = (values * 255).to(torch.uint8)
        scaled = values * 255
        near = (scaled - scaled.round()).abs() < 255 * NEAR
    assert out.shape == values.shape
    bad = (out != expected) & ~near
    assert not bad.any(), f"{int(bad.sum())} pixels differ, first at {bad.nonzero()[0].tolist()}"


def random_boxes(n, height, width, seed, min_size=0.5, max_size=None):
    """Fractional XYXY boxes, some partly or entirely outside the image."""
    g = torch.Generator().manual_seed(seed)
    max_size = max_size or 1.2 * max(height, width)
    size = min_size + torch.rand(n, 2, generator=g) * (max_size - min_size)
    centre = torch.rand(n, 2, generator=g) * torch.tensor(
        [width * 1.4, height * 1.4]
    ) - 0.2 * torch.tensor([width, height])
    return torch.cat((centre - size / 2, centre + size / 2), 1)


SPECIAL_BOXES = torch.tensor(
    [
        [3.0, 2.0, 3.0, 9.0],  # zero width
        [1.5, 4.25, 7.75, 4.25],  # zero height
        [2.0, 2.0, 2.0, 2.0],  # a point
        [-30.0, -20.0, -5.0, -4.0],  # entirely outside, top left
        [60.0, 40.0, 90.0, 70.0],  # entirely outside, bottom right
        [-10.5, -3.25, 80.5, 50.75],  # larger than the image
        [20.3, 10.7, 21.1, 11.2],  # sub-pixel
        [7.0, 5.0, 3.0, 1.0],  # inverted
        [float("nan"), 1.0, 5.0, 6.0],  # NaN: pastes nothing
        [-float("inf"), 2.0, 10.0, 12.0],  # infinite side
    ]
)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("threshold", [0.5, 0.0, 0.8, -1.0])
@pytest.mark.parametrize("mask_size", [(28, 28), (7, 11), (1, 5)])
def test_random_matches_grid_sample(dtype, threshold, mask_size):
    height, width = 37, 53
    boxes = torch.cat((random_boxes(30, height, width, seed=1), SPECIAL_BOXES)).to(dtype)
    masks = torch.rand(
        len(boxes), *mask_size, generator=torch.Generator().manual_seed(2), dtype=dtype
    )
    out = paste_masks_in_image(masks, boxes, (height, width), threshold)
    assert_pasted(out, reference_values(masks, boxes, height, width), threshold)
    assert out.any()


def test_large_image_matches_grid_sample():
    """An output large enough (> 4 MB) for the kernel's zero-filled allocation."""
    height, width = 800, 1216
    boxes = random_boxes(6, height, width, seed=3, min_size=16, max_size=400)
    masks = torch.rand(6, 28, 28, generator=torch.Generator().manual_seed(4))
    for threshold in (0.5, -1.0):
        out = paste_masks_in_image(masks, boxes, (height, width), threshold)
        assert_pasted(out, reference_values(masks, boxes, height, width), threshold)
    assert out.any()


def test_hand_computed_2x2_mask():
    """A 2x2 mask in the box (2, 2, 6, 6) of an 8x10 image. Along each axis, pixel p samples mask
    coordinate p / 2 - 1.25, so pixels 1..6 weigh the two mask cells by (1/4, 0), (3/4, 0),
    (3/4, 1/4), (1/4, 3/4), (0, 3/4), (0, 1/4); pixels 0 and 7+ are outside the extent [1, 7)."""
    weights = torch.zeros(10, 2, dtype=torch.float64)
    weights[1:7] = torch.tensor([[1, 0], [3, 0], [3, 1], [1, 3], [0, 3], [0, 1]]) / 4
    mask = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    boxes = torch.tensor([[2.0, 2.0, 6.0, 6.0]])
    expected = weights[:8] @ mask.double() @ weights.T  # [8, 10]
    out = paste_masks_in_image(mask[None], boxes, (8, 10), threshold=-1)[0]
    assert torch.equal(out, (expected * 255).to(torch.uint8))
    assert (
        out[3, 3] == 159 and out[2, 2] == 143 and out[1, 1] == 15 and out[3, 4] == 95
    )  # 0.625 ...
    assert out[0].sum() == 0 and out[:, 0].sum() == 0 and out[:, 7:].sum() == 0
    binary = paste_masks_in_image(mask[None], boxes, (8, 10))[0]
    assert torch.equal(binary, expected >= 0.5)
    # >= 0.5: the diagonal (0.5625, 0.625, 0.625, 0.5625) and its neighbours (2,3), (3,2), (4,5),
    # (5,4) at 0.5625; (3,4) is 0.375
    assert binary.sum() == 8 and binary[2, 3] and binary[5, 4] and not binary[3, 4]


def test_fractional_box_one_pixel():
    """A constant mask pasted at a fractional box: pixel (x=4, y=3) samples mask coordinates
    (4.5 - 2.3) / 3.3 * 4 - 0.5 = 2.17 and (3.5 - 1.7) / 2.5 * 4 - 0.5 = 2.38, between equal cells,
    so it reads the full value; the extent is x in [1, 7), y in [0, 6)."""
    mask = torch.full((1, 4, 4), 0.6)
    box = torch.tensor([[2.3, 1.7, 5.6, 4.2]])
    values = paste_masks_in_image(mask, box, (7, 9), threshold=-1)[0]
    assert values[3, 4] in (152, 153)  # 0.6 * 255, up to float32 rounding
    assert values[6].sum() == 0 and values[:, 0].sum() == 0 and values[:, 7:].sum() == 0
    # row 0 / column 1 sample the mask at -2.42 / -1.47: zero padding; row 1 / column 2 at
    # -0.82 / -0.26 reach into the first mask cell
    assert values[0].sum() == 0 and values[:, 1].sum() == 0
    assert values[1, 4] == int(0.6 * 0.18 * 255) and 0 < values[3, 2] < 152
    assert_pasted(values[None], reference_values(mask, box, 7, 9), -1)


@pytest.mark.parametrize("skip_ext", [False, True])
def test_support_is_the_extent(skip_ext, monkeypatch):
    """A 2x2 mask of ones in a box ~20x larger: with zero padding, bilinear sampling stays nonzero
    up to one mask cell (~20 pixels) outside the box, so the nonzero support is exactly Detectron2's
    extent [floor(x0) - 1, ceil(x1) + 1) x [floor(y0) - 1, ceil(y1) + 1), on both paths."""
    if skip_ext:
        monkeypatch.setattr("detzoo.ops.paste_masks.HAS_EXT", False)
    box = torch.tensor([[10.25, 10.5, 50.75, 40.0]])
    out = paste_masks_in_image(torch.ones(1, 2, 2), box, (60, 70), threshold=-1)[0]
    support = torch.zeros(60, 70, dtype=torch.bool)
    support[9:41, 9:52] = True
    assert torch.equal(out > 0, support)
    assert out[20, 30] == 255 and 0 < out[9, 9] < 255


def test_empty_inputs():
    for threshold, dtype in ((0.5, torch.bool), (-1.0, torch.uint8)):
        out = paste_masks_in_image(torch.zeros(0, 28, 28), torch.zeros(0, 4), (30, 40), threshold)
        assert out.shape == (0, 30, 40) and out.dtype == dtype
    out = paste_masks_in_image(torch.rand(3, 5, 5), random_boxes(3, 10, 10, seed=0), (0, 12))
    assert out.shape == (3, 0, 12) and out.dtype == torch.bool


def test_half_bfloat16_and_integer_masks():
    height, width = 21, 34
    boxes = random_boxes(9, height, width, seed=5)
    masks = torch.rand(9, 6, 6, generator=torch.Generator().manual_seed(6))
    for dtype in (torch.float16, torch.bfloat16):
        low = masks.to(dtype)
        torch.testing.assert_close(
            paste_masks_in_image(low, boxes, (height, width), -1),
            paste_masks_in_image(low.float(), boxes, (height, width), -1),
            atol=0,
            rtol=0,
        )
    binary = (masks > 0.5).to(torch.uint8)
    assert torch.equal(
        paste_masks_in_image(binary, boxes, (height, width)),
        paste_masks_in_image(binary.float(), boxes, (height, width)),
    )


def test_autocast_bfloat16():
    height, width = 25, 31
    boxes = random_boxes(7, height, width, seed=7)
    masks = torch.rand(7, 8, 8, generator=torch.Generator().manual_seed(8))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = torch.nn.functional.linear(masks.flatten(1), torch.eye(64)).view(7, 8, 8)
        assert logits.dtype == torch.bfloat16
        out = paste_masks_in_image(logits, boxes, (height, width))
    expected = paste_masks_in_image(logits.float(), boxes, (height, width))
    assert out.dtype == torch.bool and torch.equal(out, expected)


@pytest.mark.parametrize("dynamic", [False, True])
def test_compile_fullgraph(dynamic):
    """The fake kernel lets torch.compile capture the op, also with the image size symbolic."""
    boxes = random_boxes(5, 19, 23, seed=9)
    masks = torch.rand(5, 28, 28, generator=torch.Generator().manual_seed(10))

    def f(m, b, image):
        return paste_masks_in_image(m.sigmoid(), b, image.shape[-2:]).sum(0)

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager", dynamic=dynamic)
    for height, width in ((19, 23), (26, 17)):
        image = torch.zeros(3, height, width)
        result = compiled(masks, boxes, image)
        assert result.shape == (height, width) and result.max() > 0
        assert torch.equal(result, f(masks, boxes, image))


@pytest.mark.skipif(not _ext.HAS_EXT, reason="compares the compiled kernel with the fallback")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("threshold", [0.5, -1.0])
def test_fallback_equals_kernel(dtype, threshold):
    height, width = 45, 38
    boxes = torch.cat((random_boxes(25, height, width, seed=11), SPECIAL_BOXES)).to(dtype)
    masks = torch.rand(len(boxes), 9, 13, generator=torch.Generator().manual_seed(12), dtype=dtype)
    kernel = torch.ops.detzoo.paste_masks(masks, boxes, height, width, threshold)
    fallback = _paste_masks_torch(masks, boxes, height, width, threshold)
    assert_pasted(kernel, reference_values(masks, boxes, height, width), threshold)
    assert_pasted(fallback, reference_values(masks, boxes, height, width), threshold)
    if threshold >= 0:
        assert (kernel != fallback).sum() <= 2
    else:
        assert (kernel.int() - fallback.int()).abs().max() <= 1


def test_bad_inputs():
    masks, boxes = torch.rand(3, 5, 5), torch.rand(3, 4)
    with pytest.raises(ValueError, match=r"\[N, Hm, Wm\]"):
        paste_masks_in_image(masks[0], boxes, (4, 4))
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        paste_masks_in_image(masks, torch.rand(3, 5), (4, 4))
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        paste_masks_in_image(masks, torch.rand(2, 4), (4, 4))
    with pytest.raises(TypeError, match="floating-point"):
        paste_masks_in_image(masks, boxes.long(), (4, 4))
    with pytest.raises(ValueError, match="height, width"):
        paste_masks_in_image(masks, boxes, (4, 4, 3))
    with pytest.raises(ValueError, match="height, width"):
        paste_masks_in_image(masks, boxes, 4)
    with pytest.raises(ValueError, match=">= 0"):
        paste_masks_in_image(masks, boxes, (-1, 4))
    with pytest.raises(TypeError, match="two ints"):
        paste_masks_in_image(masks, boxes, (4.5, 4))
    with pytest.raises(ValueError, match="empty"):
        paste_masks_in_image(torch.rand(3, 0, 5), boxes, (4, 4))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("threshold", [0.5, -1.0])
def test_cuda_matches_cpu(dtype, threshold):
    height, width = 300, 410
    boxes = torch.cat((random_boxes(60, height, width, seed=13), SPECIAL_BOXES))
    masks = torch.rand(len(boxes), 28, 28, generator=torch.Generator().manual_seed(14)).to(dtype)
    cpu = paste_masks_in_image(masks, boxes, (height, width), threshold)
    cuda = paste_masks_in_image(masks.cuda(), boxes.cuda(), (height, width), threshold)
    assert cuda.is_cuda and cuda.dtype == cpu.dtype
    assert torch.equal(cuda.cpu(), cpu)
