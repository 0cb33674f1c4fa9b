"""Gathering picklable evaluation state from every rank, and the rank that writes files, without
Lightning."""

from typing import Any

import torch.distributed as dist


def is_distributed() -> bool:
    """True when ``torch.distributed`` is initialised with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_gather_list(items: list[Any]) -> list[Any]:
    """Concatenate ``items`` from every rank, in rank order; ``items`` itself when not distributed.

    Ranks may hold different numbers of items (no padding is needed, unlike tensor all_gather).
    Every rank must call this; each receives the full list.
    """
    if not is_distributed():
        return list(items)
    gathered: list[list[Any] | None] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, list(items))
    return [item for rank_items in gathered for item in rank_items]


def is_main_process() -> bool:
    """True on rank 0, and in a process that is not distributed (the one that writes files)."""
    return not is_distributed() or dist.get_rank() == 0
