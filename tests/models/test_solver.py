import math

import pytest
import torch
from torch import nn

from detzoo.models.solver import Solver


def test_multistep_with_linear_warmup_hand_computed():
    s = Solver(lr=0.02, warmup_iters=100, warmup_factor=0.001, steps=(1000, 2000), gamma=0.1)
    assert s.lr_factor(0) == pytest.approx(0.001)
    assert s.lr_factor(50) == pytest.approx(0.001 * 0.5 + 0.5)
    assert s.lr_factor(100) == pytest.approx(1.0)
    assert s.lr_factor(999) == pytest.approx(1.0)
    assert s.lr_factor(1000) == pytest.approx(0.1)
    assert s.lr_factor(2500) == pytest.approx(0.01)


def test_cosine_reaches_zero():
    s = Solver(schedule="cosine", warmup_iters=0, max_iters=100)
    assert s.lr_factor(0) == pytest.approx(1.0)
    assert s.lr_factor(50) == pytest.approx(0.5)
    assert s.lr_factor(100) == pytest.approx(0.0, abs=1e-12)
    assert s.lr_factor(25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))


def test_param_groups_weight_decay_for_norm_and_bias():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.GroupNorm(2, 4), nn.Linear(4, 2)
    )
    model[0].weight.requires_grad_(False)
    s = Solver(
        weight_decay=1e-4, weight_decay_norm=0.0, weight_decay_bias=1e-5, bias_lr_factor=2.0, lr=0.1
    )
    groups = s.param_groups(model)
    by_param = {id(g["params"][0]): g for g in groups}
    assert id(model[0].weight) not in by_param  # frozen
    assert (
        by_param[id(model[0].bias)]["weight_decay"] == 1e-5
        and by_param[id(model[0].bias)]["lr"] == 0.2
    )
    for norm in (model[1], model[2]):
        assert by_param[id(norm.weight)]["weight_decay"] == 0.0
        assert by_param[id(norm.bias)]["weight_decay"] == 0.0
    assert by_param[id(model[3].weight)]["weight_decay"] == 1e-4
    opt, sched = s.build(model)
    assert isinstance(opt, torch.optim.SGD)


def test_adamw_and_validation():
    opt, _ = Solver(optimizer="adamw", lr=1e-4).build(nn.Linear(2, 2))
    assert isinstance(opt, torch.optim.AdamW)
    with pytest.raises(ValueError, match="optimizer"):
        Solver(optimizer="lamb")
    with pytest.raises(ValueError, match="steps"):
        Solver(steps=(10, 5))
