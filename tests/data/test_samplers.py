import math

import pytest
import torch
from torch.utils.data import BatchSampler

from detzoo.data import (
    AspectRatioGroupedBatchSampler,
    RepeatFactorTrainingSampler,
    SeededBatchSampler,
    SeededDataset,
    TrainingSampler,
    repeat_factors_from_labels,
)
from detzoo.data.samplers import sample_seed


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


def _seeded(size=7, batch_size=2, seed=5):
    sampler = TrainingSampler(size, seed=1)
    return SeededBatchSampler(BatchSampler(sampler, batch_size, drop_last=False), seed=seed, rank=0)


def test_seeded_batches_carry_one_distinct_seed_per_position_and_epoch():
    batches = _seeded()
    first = list(batches)
    plain = list(BatchSampler(TrainingSampler(7, seed=1), 2, drop_last=False))
    assert [[i for i, _ in batch] for batch in first] == plain  # same indices, same batches
    seeds = [s for batch in first for _, s in batch]
    assert seeds == [sample_seed(5, 0, 0, position) for position in range(7)]
    assert len(set(seeds)) == 7 and all(0 <= s < 2**63 for s in seeds)
    batches.set_epoch(1)
    assert batches.sampler.epoch == 1  # Lightning reaches the index sampler as .sampler
    second = list(batches)
    assert [i for b in second for i, _ in b] != [i for b in first for i, _ in b]
    assert not {s for b in second for _, s in b} & set(seeds)
    assert sample_seed(5, 0, 1, 0) != sample_seed(5, 0, 0, 0)  # ranks differ too


def test_resuming_yields_the_rest_of_the_epoch_with_the_same_seeds():
    batches = _seeded()
    batches.set_epoch(3)
    whole = list(batches)
    batches.set_epoch(0)  # what Lightning may set before the resumed iteration starts
    batches.resume_from(3, 2)
    assert list(batches) == whole[2:]
    assert len(batches) == len(whole) == 4  # the epoch's length, as Lightning counts it
    assert list(batches) == whole  # the resume applies once: then the whole epoch


def test_resuming_after_a_complete_epoch_starts_the_next_one():
    batches = _seeded()
    batches.set_epoch(4)
    fifth = list(batches)
    batches.resume_from(3, 4)
    assert list(batches) == fifth and batches.epoch == 4
    with pytest.raises(ValueError, match="must be >= 0"):
        batches.resume_from(0, -1)


class _RandomDataset(torch.utils.data.Dataset):
    def __len__(self):
        return 3

    def __getitem__(self, index):
        return index, torch.rand(2)


def test_seeded_dataset_draws_from_the_seed_alone_and_leaves_the_global_generator():
    dataset = SeededDataset(_RandomDataset())
    torch.manual_seed(0)
    state = torch.get_rng_state()
    index, first = dataset[(2, 123)]
    assert index == 2 and torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(99)
    assert torch.equal(dataset[(2, 123)][1], first)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(2), first)
    assert not torch.equal(dataset[(2, 124)][1], first)
