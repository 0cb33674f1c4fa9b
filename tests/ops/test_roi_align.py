"""roi_align / ROIAlign against a loop reference, torchvision, and the fallback."""

import math

import pytest
import torch
import torchvision

from detzoo.ops import _ext
from detzoo.ops.roi_pooling import ROIAlign, _roi_align_torchvision, roi_align


def bilinear_ref(plane: torch.Tensor, y: float, x: float) -> float:
    """torchvision's bilinear sample of one [H, W] plane, written out."""
    height, width = plane.shape
    if y < -1 or y > height or x < -1 or x > width:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y0, x0 = int(y), int(x)
    if y0 >= height - 1:
        y0 = y1 = height - 1
        y = float(y0)
    else:
        y1 = y0 + 1
    if x0 >= width - 1:
        x0 = x1 = width - 1
        x = float(x0)
    else:
        x1 = x0 + 1
    ly, lx = y - y0, x - x0
    p = plane.tolist()
    return (
        (1 - ly) * (1 - lx) * p[y0][x0]
        + (1 - ly) * lx * p[y0][x1]
        + ly * (1 - lx) * p[y1][x0]
        + ly * lx * p[y1][x1]
    )


def roi_align_ref(input, rois, size, scale, sampling_ratio, aligned):
    """Loops over rois, channels, bins and samples."""
    ph_n, pw_n = size
    out = torch.zeros(len(rois), input.shape[1], ph_n, pw_n, dtype=torch.float64)
    offset = 0.5 if aligned else 0.0
    for k, (b, x1, y1, x2, y2) in enumerate(rois.tolist()):
        x1, y1, x2, y2 = (v * scale - offset for v in (x1, y1, x2, y2))
        w, h = x2 - x1, y2 - y1
        if not aligned:
            w, h = max(w, 1.0), max(h, 1.0)
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(h / ph_n)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(w / pw_n)
        for c in range(input.shape[1]):
            plane = input[int(b), c].double()
            for ph in range(ph_n):
                for pw in range(pw_n):
                    total = 0.0
                    for iy in range(gh):
                        for ix in range(gw):
                            y = y1 + ph * h / ph_n + (iy + 0.5) * h / ph_n / gh
                            x = x1 + pw * w / pw_n + (ix + 0.5) * w / pw_n / gw
                            total += bilinear_ref(plane, y, x)
                    out[k, c, ph, pw] = total / max(gh * gw, 1)
    return out


def make_rois(n: int, batch: int, image: float, seed: int, dtype=torch.float32) -> torch.Tensor:
    """[n, 5] rois over an image x image image, including out-of-image, zero-area, border-touching
    and reversed rois, over `batch` images."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 1.4 * image - 0.2 * image
    wh = torch.rand(n, 2, generator=g) * 0.6 * image
    boxes = torch.cat((xy, xy + wh), 1)
    special = torch.tensor(
        [
            [0.0, 0.0, image, image],  # the whole map: samples on the borders
            [5.0, 5.0, 5.0, 5.0],  # zero area
            [-30.0, -30.0, -10.0, -10.0],  # outside
            [image - 1, image - 1, image + 20, image + 20],  # over the far border
            [8.0, 6.0, 3.0, 2.0],  # reversed
        ]
    )
    boxes = torch.cat((boxes, special))
    ids = torch.randint(0, batch, (len(boxes), 1), generator=g).float()
    return torch.cat((ids, boxes), 1).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_matches_loop_reference_and_torchvision(dtype, aligned, sampling_ratio):
    torch.manual_seed(0)
    x = torch.randn(3, 2, 9, 11, dtype=dtype)
    rois = make_rois(12, 3, 40.0, seed=1, dtype=dtype)
    out = roi_align(x, rois, (3, 2), 0.25, sampling_ratio, aligned)
    assert out.dtype == dtype and out.shape == (17, 2, 3, 2)
    ref = roi_align_ref(x, rois, (3, 2), 0.25, sampling_ratio, aligned)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out.double(), ref, atol=tol, rtol=tol)
    tv = torchvision.ops.roi_align(x, rois, (3, 2), 0.25, sampling_ratio, aligned)
    torch.testing.assert_close(out, tv, atol=tol, rtol=tol)
    assert out.abs().sum() > 0


def test_many_batch_indices_and_threads():
    torch.manual_seed(1)
    x = torch.randn(6, 40, 12, 10)
    rois = make_rois(200, 6, 48.0, seed=2)
    tv = torchvision.ops.roi_align(x, rois, 5, 0.25, -1, True)
    go = torch.randn_like(tv)
    xr = x.clone().requires_grad_()
    torchvision.ops.roi_align(xr, rois, 5, 0.25, -1, True).backward(go)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            xi = x.clone().requires_grad_()
            out = roi_align(xi, rois, 5, 0.25, -1, True)
            out.backward(go)
            torch.testing.assert_close(out, tv, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(xi.grad, xr.grad, atol=1e-5, rtol=1e-5)
    finally:
        torch.set_num_threads(threads)


def test_list_of_boxes_and_int_output_size():
    torch.manual_seed(2)
    x = torch.randn(2, 3, 8, 8)
    boxes = [make_rois(4, 1, 8.0, seed=3)[:, 1:], make_rois(2, 1, 8.0, seed=4)[:, 1:]]
    out = roi_align(x, boxes, 2, 1.0, 2, True)
    tv = torchvision.ops.roi_align(x, boxes, 2, 1.0, 2, True)
    assert out.shape == (len(boxes[0]) + len(boxes[1]), 3, 2, 2)
    torch.testing.assert_close(out, tv)


def test_empty_rois_and_empty_channels():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    out = roi_align(x, torch.zeros(0, 5), (2, 2), 1.0, 2, True)
    assert out.shape == (0, 3, 2, 2)
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    empty_c = roi_align(torch.randn(1, 0, 4, 4), torch.tensor([[0.0, 0, 0, 2, 2]]), 2)
    assert empty_c.shape == (1, 0, 2, 2)


@pytest.mark.parametrize("aligned", [True, False])
def test_gradcheck(aligned):
    torch.manual_seed(3)
    x = torch.randn(2, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    rois = make_rois(6, 2, 7.0, seed=5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: roi_align(t, rois, (2, 3), 1.0, 2, aligned), (x,))
    assert torch.autograd.gradcheck(lambda t: roi_align(t, rois, (2, 2), 0.5, 0, aligned), (x,))


def test_backward_matches_torchvision_fp64():
    torch.manual_seed(4)
    x = torch.randn(3, 4, 9, 11, dtype=torch.float64, requires_grad=True)
    rois = make_rois(20, 3, 40.0, seed=6, dtype=torch.float64)
    go = torch.randn(len(rois), 4, 3, 3, dtype=torch.float64)
    (ours,) = torch.autograd.grad(roi_align(x, rois, 3, 0.25, 0, True), x, go)
    (ref,) = torch.autograd.grad(torchvision.ops.roi_align(x, rois, 3, 0.25, 0, True), x, go)
    torch.testing.assert_close(ours, ref, atol=1e-12, rtol=1e-12)


def test_compile_fullgraph_forward_and_backward():
    torch.manual_seed(5)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    rois = make_rois(5, 2, 8.0, seed=7)

    def f(t, r):
        return (roi_align(t, r, (2, 2), 1.0, 2, True) ** 2).sum()

    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    loss = compiled(x, rois)
    (grad,) = torch.autograd.grad(loss, x)
    (grad_ref,) = torch.autograd.grad(f(x, rois), x)
    torch.testing.assert_close(loss, f(x, rois))
    torch.testing.assert_close(grad, grad_ref)


@pytest.mark.skipif(not _ext.HAS_EXT, reason="checks the compiled op's registrations")
def test_opcheck_registrations():
    """Schema, fake kernel, autograd registration and AOT dispatch of the compiled op."""
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    rois = make_rois(5, 2, 7.0, seed=13, dtype=torch.float64)
    torch.library.opcheck(torch.ops.detzoo.roi_align.default, (x, rois, 1.0, 2, 3, 2, True))
    go = torch.randn(len(rois), 3, 2, 3, dtype=torch.float64)
    torch.library.opcheck(
        torch.ops.detzoo._roi_align_backward.default,
        (go, rois, 1.0, 2, 3, 2, 3, 6, 7, 2, False),
    )


def test_autocast_bfloat16():
    torch.manual_seed(6)
    x = torch.randn(2, 3, 8, 8)
    rois = make_rois(6, 2, 8.0, seed=8)  # float32 rois with bfloat16 features
    xb = x.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = roi_align(xb, rois, 2, 1.0, 2, True)
    assert out.dtype == torch.bfloat16
    ref = torchvision.ops.roi_align(xb.detach().float(), rois, 2, 1.0, 2, True)
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)
    out.float().sum().backward()
    assert xb.grad.dtype == torch.bfloat16 and xb.grad.abs().sum() > 0


def test_half_features():
    x = torch.randn(1, 2, 6, 6)
    rois = make_rois(4, 1, 6.0, seed=9)
    out = roi_align(x.half(), rois, 2, 1.0, 2, True)
    assert out.dtype == torch.float16
    ref = torchvision.ops.roi_align(x.half().float(), rois, 2, 1.0, 2, True)
    torch.testing.assert_close(out.float(), ref, atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("aligned", [True, False])
def test_fallback_matches_kernel(aligned):
    torch.manual_seed(7)
    x = torch.randn(2, 3, 9, 9)
    rois = make_rois(10, 2, 36.0, seed=10)
    out = roi_align(x, rois, (3, 3), 0.25, 0, aligned)
    fallback = _roi_align_torchvision(x, rois, 0.25, 3, 3, 0, aligned)
    torch.testing.assert_close(out, fallback, atol=1e-6, rtol=1e-6)


def test_public_function_without_extension(monkeypatch):
    """roi_align with HAS_EXT off takes the torchvision path, list boxes and half input included."""
    import detzoo.ops.roi_pooling as module

    x = torch.randn(2, 3, 8, 8)
    boxes = [make_rois(3, 1, 8.0, seed=14)[:, 1:], make_rois(2, 1, 8.0, seed=15)[:, 1:]]
    fast = roi_align(x.half(), boxes, 2, 1.0, 2, True)
    monkeypatch.setattr(module, "HAS_EXT", False)
    slow = module.roi_align(x.half(), boxes, 2, 1.0, 2, True)
    assert slow.dtype == torch.float16
    torch.testing.assert_close(slow, fast)


def test_module_defaults_to_aligned():
    x = torch.randn(1, 2, 8, 8)
    rois = make_rois(5, 1, 8.0, seed=11)
    module = ROIAlign((2, 2), 1.0, 2)
    assert module.aligned is True
    torch.testing.assert_close(module(x, rois), roi_align(x, rois, 2, 1.0, 2, aligned=True))
    assert not torch.allclose(module(x, rois), roi_align(x, rois, 2, 1.0, 2, aligned=False))
    assert "aligned=True" in repr(module)


def test_bad_inputs_raise_clear_errors():
    x = torch.randn(1, 2, 8, 8)
    with pytest.raises(ValueError, match=r"\[K, 5\]"):
        roi_align(x, torch.zeros(3, 4), 2)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        roi_align(x[0], torch.zeros(3, 5), 2)
    with pytest.raises(TypeError, match="floating-point"):
        roi_align(x.long(), torch.zeros(3, 5), 2)
    with pytest.raises(ValueError, match="output_size"):
        roi_align(x, torch.zeros(3, 5), (0, 2))
    if _ext.HAS_EXT:
        with pytest.raises(RuntimeError, match="batch index"):
            roi_align(x, torch.tensor([[1.0, 0, 0, 4, 4]]), 2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(dtype):
    torch.manual_seed(8)
    x = torch.randn(3, 5, 12, 13).to(dtype)
    rois = make_rois(40, 3, 50.0, seed=12)
    go = torch.randn(len(rois), 5, 3, 3).to(dtype)
    results = []
    for device in ("cpu", "cuda"):
        xi = x.to(device).requires_grad_()
        out = roi_align(xi, rois.to(device), 3, 0.25, 0, True)
        out.backward(go.to(device))
        results.append((out.cpu().float(), xi.grad.cpu().float()))
    tol = 1e-5 if dtype in (torch.float32, torch.float64) else 2e-2
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)
