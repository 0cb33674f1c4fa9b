"""Interleaved median timing shared by the benchmark scripts.

Two implementations of the same work are timed alternately (A, B, A, B, ...) so that machine
noise (another process, thermal state) hits both alike; the ratio of medians is reported.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Case:
    """One benchmark row: ``ours`` and ``reference`` do the same work; ``target`` is the speed-up
    (reference time / our time) the project aims for."""

    name: str
    ours: Callable[[], object]
    reference: Callable[[], object]
    target: float
    reference_name: str = "torchvision"


@dataclass
class Result:
    name: str
    ours_ms: float
    reference_ms: float
    target: float
    reference_name: str

    @property
    def speedup(self) -> float:
        return self.reference_ms / self.ours_ms


def time_interleaved(case: Case, repeats: int = 7, warmup: int = 1) -> Result:
    """Median wall time of each side over ``repeats`` interleaved runs, in milliseconds."""
    for _ in range(warmup):
        case.ours()
        case.reference()
    ours, ref = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        case.ours()
        t1 = time.perf_counter()
        case.reference()
        t2 = time.perf_counter()
        ours.append(t1 - t0)
        ref.append(t2 - t1)
    return Result(
        case.name,
        1e3 * statistics.median(ours),
        1e3 * statistics.median(ref),
        case.target,
        case.reference_name,
    )


def format_table(results: list[Result]) -> str:
    """A Markdown table: op, our median, reference median, speed-up, target, met or not."""
    rows = [
        "| case | detzoo (ms) | reference (ms) | speed-up | target | met |",
        "| --- | ---: | ---: | ---: | ---: | :---: |",
    ]
    for r in results:
        met = "yes" if r.speedup >= r.target else "**no**"
        rows.append(
            f"| {r.name} | {r.ours_ms:.2f} | {r.reference_ms:.2f} ({r.reference_name}) "
            f"| {r.speedup:.2f}x | {r.target:.2f}x | {met} |"
        )
    return "\n".join(rows)
