"""The semantic FPN head: tower layout (Detectron2's names), output size, loss on hand-computed
cases, target padding."""

import math

import pytest
import torch
import torch.nn.functional as F

from detzoo.heads.semantic_fpn import SemSegFPNHead, pad_semantic_targets


def _features(n: int = 2, h: int = 64, w: int = 96, c: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {f"p{k}": torch.randn(n, c, h // 2**k, w // 2**k, generator=g) for k in (2, 3, 4, 5)}


def _head(**kwargs) -> SemSegFPNHead:
    args = {"in_channels": 8, "num_classes": 3, "conv_dims": 32, **kwargs}
    return SemSegFPNHead(("p2", "p3", "p4", "p5"), in_strides=(4, 8, 16, 32), **args)


def test_towers_have_one_conv_per_octave_and_detectron2_names():
    head = _head()
    convs = {k.rsplit(".", 1)[0] for k in head.state_dict() if k.endswith(".weight")}
    assert convs == {
        "p2.0", "p2.0.norm", "p3.0", "p3.0.norm", "p4.0", "p4.0.norm", "p4.2", "p4.2.norm",
        "p5.0", "p5.0.norm", "p5.2", "p5.2.norm", "p5.4", "p5.4.norm", "predictor",
    }  # fmt: skip
    assert not hasattr(head.p2[0], "bias") or head.p2[0].bias is None  # GN convs have no bias
    assert isinstance(head.p2[0].norm, torch.nn.GroupNorm) and head.p2[0].norm.num_groups == 32


def test_logits_come_out_at_the_padded_input_size():
    head = _head().eval()
    logits = head(_features())
    assert logits.shape == (2, 3, 64, 96)
    # the merge is at stride 4, then a 4x bilinear upsampling
    torch.testing.assert_close(
        logits, F.interpolate(head.layers(_features()), scale_factor=4, mode="bilinear")
    )


def test_loss_is_the_weighted_cross_entropy_over_labelled_pixels():
    head = _head(loss_weight=0.5)
    logits = torch.zeros(1, 3, 4, 4, requires_grad=True)
    targets = torch.tensor([[[0, 1, 2, 255]] * 4])
    loss = head.losses(logits, targets)["loss_sem_seg"]
    assert math.isclose(loss.item(), 0.5 * math.log(3), rel_tol=1e-6)  # uniform logits
    # a confident, correct pixel adds ~0; ignored pixels add nothing whatever their logits
    logits2 = torch.zeros(1, 3, 1, 2)
    logits2[0, 1, 0, 0] = 50.0
    logits2[0, 0, 0, 1] = -50.0
    assert head.losses(logits2, torch.tensor([[[1, 255]]]))["loss_sem_seg"].item() < 1e-6


def test_all_ignored_batch_gives_zero_loss_with_gradients():
    head = _head()
    logits = head(_features(1, 64, 64))
    loss = head.losses(logits, torch.full((1, 64, 64), 255))["loss_sem_seg"]
    loss.backward()
    assert loss.item() == 0.0
    assert head.predictor.weight.grad is not None


def test_bad_targets_are_named():
    head = _head()
    with pytest.raises(ValueError, match="value 7"):
        head.losses(torch.zeros(1, 3, 2, 2), torch.tensor([[[0, 7], [1, 255]]]))
    with pytest.raises(ValueError, match="differ in size"):
        head.losses(torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match="power of two"):
        SemSegFPNHead(("p2", "p3"), 8, (4, 12), 3)


def test_targets_are_padded_with_the_ignore_value_like_the_images():
    targets = [{"sem_seg": torch.ones(2, 3, dtype=torch.int64)}, {"sem_seg": torch.zeros(3, 2)}]
    out = pad_semantic_targets(targets, [(2, 3), (3, 2)], (4, 4))
    assert out.shape == (2, 4, 4) and out.dtype == torch.int64
    assert (out[0, :2, :3] == 1).all() and (out[0, 2:] == 255).all() and (out[0, :, 3] == 255).all()
    assert (out[1, :3, :2] == 0).all() and (out[1, 3] == 255).all()
    with pytest.raises(ValueError, match="no 'sem_seg'"):
        pad_semantic_targets([{}], [(2, 2)], (4, 4))
    with pytest.raises(ValueError, match="transforms must move sem_seg"):
        pad_semantic_targets(targets, [(2, 2), (3, 2)], (4, 4))
