"""Training samplers, DDP-aware (each rank takes its own shard of one shared permutation) and
epoch-seeded (``set_epoch``, which Lightning calls), after Detectron2's samplers but finite per
epoch so Lightning's epochs and progress bars work; the seeded, resumable batch wrapper; and the
inference sampler, which shards evaluation data without padding.

Lightning must not shard the training samplers again: train with
``Trainer(use_distributed_sampler=False)`` under DDP.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, Sampler


def _rank_and_world_size(rank: int | None, world_size: int | None) -> tuple[int, int]:
    initialized = dist.is_available() and dist.is_initialized()
    if world_size is None:
        world_size = dist.get_world_size() if initialized else 1
    if rank is None:
        rank = dist.get_rank() if initialized else 0
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
    return rank, world_size


class _EpochShardedSampler(Sampler[int]):
    """Base: subclasses give the epoch's full index list; this shards and pads it."""

    def __init__(self, seed: int, rank: int | None, world_size: int | None) -> None:
        self.seed = seed
        self.epoch = 0
        self.rank, self.world_size = _rank_and_world_size(rank, world_size)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)

    def epoch_indices(self, generator: torch.Generator) -> list[int]:
        raise NotImplementedError

    def _shard(self) -> list[int]:
        indices = self.epoch_indices(self._generator())
        if not indices:
            return []
        per_rank = math.ceil(len(indices) / self.world_size)
        padded = (indices * math.ceil(per_rank * self.world_size / len(indices)))[
            : per_rank * self.world_size
        ]
        return padded[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self._shard())

    def __len__(self) -> int:
        return len(self._shard())


class TrainingSampler(_EpochShardedSampler):
    """Each epoch, a permutation of ``range(size)`` (or the identity if not ``shuffle``), split
    across ranks (padded by wrapping so that every rank gets the same count)."""

    def __init__(
        self,
        size: int,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__(seed, rank, world_size)
        self.size, self.shuffle = size, shuffle

    def epoch_indices(self, generator: torch.Generator) -> list[int]:
        if self.shuffle:
            return torch.randperm(self.size, generator=generator).tolist()
        return list(range(self.size))


def repeat_factors_from_labels(image_labels: Sequence[set[int]], threshold: float) -> torch.Tensor:
    """Detectron2's LVIS repeat factors, float32 ``[num_images]``.

    With ``f(c)`` the fraction of images containing category ``c``, ``r(c) = max(1,
    sqrt(threshold / f(c)))`` and an image's factor is the max ``r(c)`` over its categories (1 for
    images without annotations).
    """
    counts: dict[int, int] = {}
    for labels in image_labels:
        for label in labels:
            counts[label] = counts.get(label, 0) + 1
    num_images = len(image_labels)
    category_factor = {
        c: max(1.0, math.sqrt(threshold / (n / num_images))) for c, n in counts.items()
    }
    factors = [max((category_factor[c] for c in labels), default=1.0) for labels in image_labels]
    return torch.tensor(factors, dtype=torch.float32)


class RepeatFactorTrainingSampler(_EpochShardedSampler):
    """Detectron2's ``RepeatFactorTrainingSampler``: image ``i`` appears ``floor(r_i)`` times plus
    once more with probability ``r_i - floor(r_i)`` (stochastic rounding, redrawn every epoch),
    then all is shuffled and sharded across ranks.

    Args:
        repeat_factors: float ``[num_images]``, e.g. from :func:`repeat_factors_from_labels`.
    """

    def __init__(
        self,
        repeat_factors: torch.Tensor,
        shuffle: bool = True,
        seed: int = 0,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        super().__init__(seed, rank, world_size)
        self.repeat_factors, self.shuffle = repeat_factors.float(), shuffle
        self._integer = torch.floor(self.repeat_factors)
        self._fraction = self.repeat_factors - self._integer

    def epoch_indices(self, generator: torch.Generator) -> list[int]:
        draws = torch.rand(len(self._fraction), generator=generator)
        repeats = (self._integer + (draws < self._fraction).float()).long()
        indices = torch.repeat_interleave(torch.arange(len(repeats)), repeats)
        if self.shuffle:
            indices = indices[torch.randperm(len(indices), generator=generator)]
        return indices.tolist()


class AspectRatioGroupedBatchSampler(Sampler[list[int]]):
    """Batches of only landscape (w >= h) or only portrait images, as Detectron2's
    ``AspectRatioGroupedDataset``: indices from ``sampler`` go to their group's bucket, a full
    bucket is yielded; leftovers are yielded at the end (unless ``drop_last``).

    Args:
        sampler: yields dataset indices; its ``set_epoch`` is forwarded.
        is_landscape: per dataset index, whether the image is landscape.
    """

    def __init__(
        self,
        sampler: Sampler[int],
        is_landscape: Sequence[bool],
        batch_size: int,
        drop_last: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.sampler, self.is_landscape = sampler, list(is_landscape)
        self.batch_size, self.drop_last = batch_size, drop_last

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        buckets: dict[bool, list[int]] = {True: [], False: []}
        for index in self.sampler:
            bucket = buckets[self.is_landscape[index]]
            bucket.append(index)
            if len(bucket) == self.batch_size:
                yield bucket[:]
                bucket.clear()
        if not self.drop_last:
            yield from (bucket for bucket in buckets.values() if bucket)

    def __len__(self) -> int:
        landscape = sum(self.is_landscape[i] for i in self.sampler)
        counts = (landscape, len(self.sampler) - landscape)
        rounding = math.floor if self.drop_last else math.ceil
        return sum(rounding(n / self.batch_size) for n in counts)


def sample_seed(seed: int, epoch: int, rank: int, position: int) -> int:
    """The augmentation seed of the ``position``-th training sample (0-based, counted over the
    epoch on one rank): a 63-bit hash of the four numbers, so that no two samples share a seed."""
    digest = hashlib.blake2b(f"{seed}/{epoch}/{rank}/{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


class SeededBatchSampler(Sampler[list[tuple[int, int]]]):
    """Wraps a training batch sampler: every index ``i`` becomes ``(i, seed)``, with ``seed``
    from :func:`sample_seed` (base seed, epoch, rank, position in the epoch), which
    :class:`SeededDataset` draws that sample's augmentation from. A sample's augmentation then
    depends on neither the worker that loads it, nor the number of workers, nor what the loader
    prefetched — which is what lets training resume exactly in the middle of an epoch:
    :meth:`resume_from` makes the next iteration yield an epoch's batches after those already
    trained on, with the augmentations they had in the interrupted run.

    Lightning's ``set_epoch`` reaches the wrapped index sampler as ``batch_sampler.sampler``.

    Args:
        batch_sampler: yields lists of dataset indices; has ``sampler``, the epoch-seeded index
            sampler (e.g. :class:`TrainingSampler`), and ``set_epoch`` or a sampler with it.
        seed: base seed of the augmentations.
        rank: this process's rank (defaults to that of ``torch.distributed``).
    """

    def __init__(self, batch_sampler: Sampler[list[int]], seed: int = 0, rank: int | None = None):
        self.batch_sampler, self.seed = batch_sampler, seed
        self.sampler = batch_sampler.sampler
        self.rank = _rank_and_world_size(rank, None)[0] if rank is None else rank
        self._resume: tuple[int, int] | None = None

    @property
    def epoch(self) -> int:
        """The epoch the wrapped index sampler is set to."""
        return getattr(self.sampler, "epoch", 0)

    def set_epoch(self, epoch: int) -> None:
        target = self.batch_sampler if hasattr(self.batch_sampler, "set_epoch") else self.sampler
        target.set_epoch(epoch)

    def resume_from(self, epoch: int, batches: int) -> None:
        """Make the next iteration yield epoch ``epoch``'s batches after its first ``batches``
        (whatever epoch ``set_epoch`` sets before that; the whole of epoch ``epoch + 1`` when
        ``batches`` covers the epoch); later iterations are whole epochs."""
        if epoch < 0 or batches < 0:
            raise ValueError(
                f"cannot resume from epoch {epoch}, batch {batches}: both must be >= 0"
            )
        self._resume = (epoch, batches)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        skip = 0
        if self._resume is not None:
            (epoch, skip), self._resume = self._resume, None
            self.set_epoch(epoch)
            if skip >= len(self.batch_sampler):  # the epoch was complete: the next one, whole
                self.set_epoch(epoch + 1)
                skip = 0
        epoch, position = self.epoch, 0
        for number, batch in enumerate(self.batch_sampler):
            if number >= skip:
                yield [
                    (index, sample_seed(self.seed, epoch, self.rank, position + slot))
                    for slot, index in enumerate(batch)
                ]
            position += len(batch)

    def __len__(self) -> int:
        return len(self.batch_sampler)


class SeededDataset(Dataset):
    """Loads ``(index, seed)`` keys from :class:`SeededBatchSampler`: ``dataset[index]`` with
    torch's generator seeded by ``seed`` for the call (the caller's generator state is restored
    afterwards), so that the sample's random augmentation is a function of its seed alone."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]


class InferenceSampler(DistributedSampler):
    """Detectron2's ``InferenceSampler``: rank ``r`` of ``W`` takes the ``r``-th of ``W``
    contiguous, near-equal slices of ``range(size)`` (the first ``size % W`` ranks one more), in
    order and without padding, so that every image is evaluated exactly once and predictions
    gathered in rank order are in dataset order. With one process it is ``range(size)``.

    It subclasses ``DistributedSampler`` only so that Lightning, whatever its
    ``use_distributed_sampler``, leaves it as it is: Lightning would otherwise replace or wrap it
    with a ``DistributedSampler``, which pads the shards by repeating images (counting them twice in
    evaluation). None of ``DistributedSampler``'s own logic is used.

    Ranks may get different numbers of batches; detzoo's evaluation gathers uneven ranks. Under
    DDP during ``fit``, keep the evaluated set at least as large as the world size: DDP
    broadcasts buffers in a rank's first validation forward, which a rank without images skips.

    Args:
        size: number of items (images) in the dataset.
        rank, world_size: default to those of ``torch.distributed`` (0 and 1 without it).
    """

    def __init__(self, size: int, rank: int | None = None, world_size: int | None = None) -> None:
        if size < 0:
            raise ValueError(f"size must be >= 0, got {size}")
        self.size = size
        self.rank, self.world_size = _rank_and_world_size(rank, world_size)
        shard, left = divmod(size, self.world_size)
        self.begin = shard * self.rank + min(self.rank, left)
        self.end = self.begin + shard + (self.rank < left)
        # DistributedSampler's attributes, for code that reads them (its __init__ is not called:
        # it would need a dataset and pads)
        self.dataset, self.num_replicas, self.epoch = None, self.world_size, 0
        self.num_samples, self.total_size = self.end - self.begin, size
        self.shuffle, self.seed, self.drop_last = False, 0, False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch  # the order never changes

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.begin, self.end))

    def __len__(self) -> int:
        return self.end - self.begin
