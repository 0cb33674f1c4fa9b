import math

import pytest
import torch

from detzoo.data import (
    AspectRatioGroupedBatchSampler,
    RepeatFactorTrainingSampler,
    TrainingSampler,
    repeat_factors_from_labels,
)


def test_repeat_factors_follow_detectron2s_formula():
    # category 0 in 4/4 images, category 1 in 1/4: r(1) = sqrt(0.5 / 0.25)
    labels = [{0}, {0}, {0}, {0, 1}, set()]
    factors = repeat_factors_from_labels(labels, threshold=0.5)
    f0, f1 = 4 / 5, 1 / 5
    expected = [max(1, math.sqrt(0.5 / f0))] * 3 + [math.sqrt(0.5 / f1), 1.0]
    torch.testing.assert_close(factors, torch.tensor(expected))


def test_stochastic_rounding_averages_to_the_factor():
    factors = torch.tensor([1.0, 2.5, 1.25]).repeat(2000)  # image i has factor factors[i]
    sampler = RepeatFactorTrainingSampler(factors, seed=3)
    counts = torch.bincount(torch.tensor(list(sampler)), minlength=6000).float().view(2000, 3)
    assert set(counts[:, 1].tolist()) == {2.0, 3.0} and set(counts[:, 2].tolist()) == {1.0, 2.0}
    torch.testing.assert_close(counts.mean(0), torch.tensor([1.0, 2.5, 1.25]), atol=0.05, rtol=0)
    sampler.set_epoch(1)
    assert (
        torch.bincount(torch.tensor(list(sampler)), minlength=6000)
        .float()
        .view(2000, 3)
        .ne(counts)
        .any()
    )


def test_shards_are_disjoint_cover_and_change_with_epoch():
    shards = [list(TrainingSampler(10, seed=1, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 4 for s in shards)  # 10 padded to 12
    assert set(sum(shards, [])) == set(range(10))  # only the 2 padding indices repeat
    sampler = TrainingSampler(10, seed=1, rank=0, world_size=1)
    first = list(sampler)
    assert list(sampler) == first  # deterministic within an epoch
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(sampler) == list(range(10))
    with pytest.raises(ValueError, match="rank 3"):
        TrainingSampler(10, rank=3, world_size=3)


def test_repeat_factor_sampler_shards_consistently():
    factors = torch.tensor([1.0, 3.0, 1.5, 1.0])
    shards = [
        list(RepeatFactorTrainingSampler(factors, seed=0, rank=r, world_size=2)) for r in (0, 1)
    ]
    assert len(shards[0]) == len(shards[1])
    assert sum(shards, []).count(1) >= 3


def test_batches_hold_one_orientation_only():
    landscape = [i % 3 == 0 for i in range(20)]
    batches = AspectRatioGroupedBatchSampler(TrainingSampler(20, seed=0), landscape, batch_size=4)
    produced = list(batches)
    assert len(produced) == len(batches) == math.ceil(7 / 4) + math.ceil(13 / 4)
    for batch in produced:
        assert len({landscape[i] for i in batch}) == 1
    assert sorted(sum(produced, [])) == list(range(20))
    dropped = AspectRatioGroupedBatchSampler(TrainingSampler(20), landscape, 4, drop_last=True)
    assert all(len(b) == 4 for b in dropped) and len(list(dropped)) == len(dropped) == 1 + 3
