"""Keep freed tensor memory in the process when training on the CPU, instead of handing it back to
the operating system after every tensor.

glibc's ``malloc`` serves large blocks (above a threshold that starts at 128 KiB and grows to
32 MiB at most) with fresh ``mmap`` calls and unmaps them on ``free``. A detector's feature maps,
ROI batches and their gradients are such blocks, allocated and freed again at every step, so each
is faulted in page by page (4 KiB at a time) on every step. On the 2-core machine of
benchmarks/RESULTS.md ("CPU memory reuse") a ReLU with a fresh 36 MB output takes ~27 ms against
~5 ms once freed memory is reused, and a shapes Panoptic FPN training step incurs ~90,000 page
faults against ~9,000 and takes ~10% longer (1.75 s against 1.57 s). With ``mmap`` off for
``malloc`` and the heap never trimmed, freed blocks are reused without page faults (after the
first few have grown the heap); the price is that the process keeps its peak memory until it
exits.
"""

from __future__ import annotations

import ctypes
import platform
import sys

import lightning as L
from lightning.pytorch.accelerators import CPUAccelerator

#: glibc ``mallopt`` parameters (``malloc.h``)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
#: largest trim threshold ``mallopt`` takes (an ``int``): the heap's free top is never returned
NEVER_TRIM = 2**31 - 1


def reuse_freed_memory() -> bool:
    """Make glibc's ``malloc`` keep freed memory for reuse (process-wide, for the rest of the
    process; dataloader workers forked later inherit it): no ``mmap`` for large blocks, no heap
    trimming.

    Returns:
        True when applied; False, changing nothing, where the C library is not glibc (macOS,
        Windows, musl) or ``mallopt`` refuses the settings.
    """
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))


class ReuseFreedMemory(L.Callback):
    """Calls :func:`reuse_freed_memory` when a run starts on the CPU accelerator (GPU runs are left
    alone: their tensors live in the CUDA caching allocator). ``detzoo fit``/``validate``/
    ``test``/``predict`` add it to every trainer; add it yourself to a ``Trainer`` you build."""

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if isinstance(trainer.accelerator, CPUAccelerator):
            reuse_freed_memory()
