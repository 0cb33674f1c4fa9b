"""roi_align_rotated / ROIAlignRotated against a loop reference, roi_align, and the fallback."""

import math

import pytest
import torch

from detzoo.ops import _ext
from detzoo.ops.roi_pooling import roi_align
from detzoo.ops.rotated_roi_pooling import (
    ROIAlignRotated,
    _roi_align_rotated_torch,
    roi_align_rotated,
)

from .test_roi_align import bilinear_ref, make_rois


def roi_align_rotated_ref(input, rois, size, scale, sampling_ratio):
    """Detectron2's ROIAlignRotated, as loops."""
    ph_n, pw_n = size
    out = torch.zeros(len(rois), input.shape[1], ph_n, pw_n, dtype=torch.float64)
    for k, (b, cx, cy, w, h, angle) in enumerate(rois.tolist()):
        cx, cy, w, h = cx * scale - 0.5, cy * scale - 0.5, w * scale, h * scale
        cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        gh = sampling_ratio if sampling_ratio > 0 else math.ceil(h / ph_n)
        gw = sampling_ratio if sampling_ratio > 0 else math.ceil(w / pw_n)
        for c in range(input.shape[1]):
            plane = input[int(b), c].double()
            for ph in range(ph_n):
                for pw in range(pw_n):
                    total = 0.0
                    for iy in range(gh):
                        for ix in range(gw):
                            yy = -h / 2 + ph * h / ph_n + (iy + 0.5) * h / ph_n / gh
                            xx = -w / 2 + pw * w / pw_n + (ix + 0.5) * w / pw_n / gw
                            y, x = yy * cos - xx * sin + cy, yy * sin + xx * cos + cx
                            total += bilinear_ref(plane, y, x)
                    out[k, c, ph, pw] = total / max(gh * gw, 1)
    return out


def make_rotated(n: int, batch: int, image: float, seed: int, dtype=torch.float32) -> torch.Tensor:
    """[n, 6] rotated rois from make_rois' boxes (incl. zero-size and outside ones), random angles."""
    r = make_rois(n, batch, image, seed, torch.float64)
    centre, size = (r[:, 1:3] + r[:, 3:5]) / 2, (r[:, 3:5] - r[:, 1:3]).abs()
    angle = torch.rand(len(r), 1, generator=torch.Generator().manual_seed(seed)) * 360 - 180
    return torch.cat((r[:, :1], centre, size, angle.double()), 1).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_matches_loop_reference(dtype, sampling_ratio):
    torch.manual_seed(0)
    x = torch.randn(3, 2, 9, 11, dtype=dtype)
    rois = make_rotated(12, 3, 40.0, seed=1, dtype=dtype)
    out = roi_align_rotated(x, rois, (3, 2), 0.25, sampling_ratio)
    assert out.dtype == dtype and out.shape == (17, 2, 3, 2)
    ref = roi_align_rotated_ref(x, rois, (3, 2), 0.25, sampling_ratio)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out.double(), ref, atol=tol, rtol=tol)
    assert out.abs().sum() > 0


def test_angle_0_equals_aligned_roi_align():
    torch.manual_seed(1)
    x = torch.randn(2, 3, 10, 12, dtype=torch.float64)
    rois = make_rotated(15, 2, 40.0, seed=2, dtype=torch.float64)
    rois[:, 5] = 0
    boxes = torch.cat(
        (rois[:, :1], rois[:, 1:3] - rois[:, 3:5] / 2, rois[:, 1:3] + rois[:, 3:5] / 2), 1
    )
    for sampling_ratio in (0, 3):
        ours = roi_align_rotated(x, rois, (2, 3), 0.25, sampling_ratio)
        ref = roi_align(x, boxes, (2, 3), 0.25, sampling_ratio, aligned=True)
        torch.testing.assert_close(ours, ref, atol=1e-12, rtol=1e-12)


def test_angle_90_is_a_transposed_flipped_map():
    """At 90 degrees a sample (v, u) of the roi frame reads F[cy - u, cx + v]; that is the
    axis-aligned roi centred at (x = S - cy, y = cx), size (w, h), on G = F.T flipped left-right."""
    torch.manual_seed(2)
    size = 9
    x = torch.randn(1, 2, size, size, dtype=torch.float64)
    g = x.transpose(2, 3).flip(3)
    rois = make_rotated(10, 1, float(size), seed=3, dtype=torch.float64)
    rois[:, 5] = 90
    cx, cy, w, h = rois[:, 1], rois[:, 2], rois[:, 3], rois[:, 4]
    bx, by = size - cy, cx
    boxes = torch.stack((rois[:, 0], bx - w / 2, by - h / 2, bx + w / 2, by + h / 2), 1)
    ours = roi_align_rotated(x, rois, (3, 2), 1.0, 2)
    ref = roi_align(g, boxes, (3, 2), 1.0, 2, aligned=True)
    torch.testing.assert_close(ours, ref, atol=1e-9, rtol=1e-9)


def test_gradcheck():
    torch.manual_seed(3)
    x = torch.randn(2, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    rois = make_rotated(6, 2, 7.0, seed=4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: roi_align_rotated(t, rois, (2, 3), 1.0, 2), (x,))
    assert torch.autograd.gradcheck(lambda t: roi_align_rotated(t, rois, 2, 0.5, 0), (x,))


@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_fallback_matches_kernel_forward_and_backward(sampling_ratio):
    torch.manual_seed(4)
    x = torch.randn(3, 4, 9, 11, dtype=torch.float64)
    rois = make_rotated(20, 3, 40.0, seed=5, dtype=torch.float64)
    go = torch.randn(len(rois), 4, 3, 2, dtype=torch.float64)
    grads = []

    def fallback(t, r, size, scale, ratio):
        return _roi_align_rotated_torch(t, r, scale, *size, ratio)

    for fn in (roi_align_rotated, fallback):
        xi = x.clone().requires_grad_()
        out = fn(xi, rois, (3, 2), 0.25, sampling_ratio)
        out.backward(go)
        grads.append((out, xi.grad))
    torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-12, rtol=1e-12)


def test_public_function_without_extension(monkeypatch):
    """roi_align_rotated with HAS_EXT off takes the plain-PyTorch path, half input included."""
    import detzoo.ops.rotated_roi_pooling as module

    x = torch.randn(2, 3, 8, 8)
    rois = make_rotated(6, 2, 8.0, seed=10)
    fast = roi_align_rotated(x.half(), rois, 2, 1.0, 0)
    monkeypatch.setattr(module, "HAS_EXT", False)
    slow = module.roi_align_rotated(x.half(), rois, 2, 1.0, 0)
    assert slow.dtype == torch.float16
    torch.testing.assert_close(slow, fast)


def test_empty_rois():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    out = roi_align_rotated(x, torch.zeros(0, 6), (2, 2), 1.0, 2)
    assert out.shape == (0, 3, 2, 2)
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    assert _roi_align_rotated_torch(x, torch.zeros(0, 6), 1.0, 2, 2, 2).shape == (0, 3, 2, 2)


def test_compile_fullgraph_forward_and_backward():
    torch.manual_seed(5)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    rois = make_rotated(5, 2, 8.0, seed=6)

    def f(t, r):
        return (roi_align_rotated(t, r, (2, 2), 1.0, 2) ** 2).sum()

    loss = torch.compile(f, fullgraph=True, backend="aot_eager")(x, rois)
    (grad,) = torch.autograd.grad(loss, x)
    (grad_ref,) = torch.autograd.grad(f(x, rois), x)
    torch.testing.assert_close(loss, f(x, rois))
    torch.testing.assert_close(grad, grad_ref)


@pytest.mark.skipif(not _ext.HAS_EXT, reason="checks the compiled op's registrations")
def test_opcheck_registrations():
    """Schema, fake kernel, autograd registration and AOT dispatch of the compiled op."""
    x = torch.randn(2, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    rois = make_rotated(5, 2, 7.0, seed=8, dtype=torch.float64)
    torch.library.opcheck(torch.ops.detzoo.roi_align_rotated.default, (x, rois, 1.0, 2, 3, 0))
    go = torch.randn(len(rois), 3, 2, 3, dtype=torch.float64)
    torch.library.opcheck(
        torch.ops.detzoo._roi_align_rotated_backward.default, (go, rois, 1.0, 2, 3, 2, 3, 6, 7, 2)
    )


def test_autocast_bfloat16():
    torch.manual_seed(6)
    x = torch.randn(2, 3, 8, 8)
    rois = make_rotated(6, 2, 8.0, seed=7)
    xb = x.bfloat16().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ROIAlignRotated(2, 1.0, 2)(xb, rois)
    assert out.dtype == torch.bfloat16
    ref = roi_align_rotated(xb.detach().float(), rois, 2, 1.0, 2)
    torch.testing.assert_close(out.float(), ref, atol=2e-2, rtol=2e-2)
    out.float().sum().backward()
    assert xb.grad.dtype == torch.bfloat16 and xb.grad.abs().sum() > 0


def test_bad_inputs_raise_clear_errors():
    x = torch.randn(1, 2, 8, 8)
    with pytest.raises(ValueError, match=r"\[K, 6\]"):
        roi_align_rotated(x, torch.zeros(3, 5), 2, 1.0, 0)
    negative = torch.tensor([[0.0, 4, 4, -2, 3, 10]])
    with pytest.raises(ValueError, match="negative size"):
        _roi_align_rotated_torch(x, negative, 1.0, 2, 2, 0)
    if _ext.HAS_EXT:
        with pytest.raises(RuntimeError, match="negative size"):
            roi_align_rotated(x, negative, 2, 1.0, 0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(dtype):
    torch.manual_seed(8)
    x = torch.randn(3, 5, 12, 13).to(dtype)
    rois = make_rotated(40, 3, 50.0, seed=9)
    go = torch.randn(len(rois), 5, 3, 3).to(dtype)
    results = []
    for device in ("cpu", "cuda"):
        xi = x.to(device).requires_grad_()
        out = roi_align_rotated(xi, rois.to(device), 3, 0.25, 0)
        out.backward(go.to(device))
        results.append((out.cpu().float(), xi.grad.cpu().float()))
    tol = 1e-5 if dtype in (torch.float32, torch.float64) else 2e-2
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=tol, rtol=tol)
