"""Times whole detzoo models against torchvision's on CPU: inference latency and a training step.

    python benchmarks/bench_models.py [--threads 2] [--repeats 3]
                                      [--models faster_rcnn,retinanet,mask_rcnn,keypoint_rcnn]
                                      [--no-train]

Models: Faster R-CNN, RetinaNet, Mask R-CNN and Keypoint R-CNN, all R50-FPN. Cases (see
``cases_models.py`` for how the two sides are made to do the same work):

- inference: one 800x1216 photo, score threshold 0, exactly 100 detections on both sides, with
  their masks pasted at image size (Mask R-CNN) / their 17 keypoints (Keypoint R-CNN);
- train step: forward + backward + SGD step, batch of two 512x683 photos with three boxes each
  (and their masks / keypoints).

Targets (speed-up over torchvision): 1.3x for Mask R-CNN inference, 1.15x for every other case.

The first call of each side is a warm-up run under ``FlopCounterMode`` (conv/matmul FLOPs; custom
ops such as ROIAlign and NMS are not counted; detzoo's Winograd 3x3 convolutions count as the direct
convolutions they compute); then ``--repeats`` interleaved timed runs. The machine's dense
throughput is sampled before every case and at the end on a 3x3 256->256 direct (oneDNN)
convolution (the FPN/RPN conv) at the P3 size; the best sample turns each FLOP count into the floor
it implies for direct convolution: FLOPs / throughput (Winograd can go below it). Prints two Markdown tables, ready for RESULTS.md, and the 1-min load average
(other processes on the same cores inflate all times; the interleaved ratios stay fair).

Takes about 5 minutes for Faster R-CNN and RetinaNet on 2 idle cores with the default
``--repeats 3``, roughly 12 for all four models (Keypoint R-CNN is the slowest: its head's eight
512-channel 3x3 convs on 100 ROIs are two thirds of its inference FLOPs); longer under contention.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count, register_flop_formula

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases_models import MODEL_NAMES, cases  # noqa: E402
from timing import Result, format_table, time_interleaved  # noqa: E402


def recording(fn: Callable[[], object], seconds: list[float]) -> Callable[[], object]:
    """``fn``, appending the wall time of every call to ``seconds``."""

    def run() -> object:
        t0 = time.perf_counter()
        out = fn()
        seconds.append(time.perf_counter() - t0)
        return out

    return run


@register_flop_formula(torch.ops.aten._nnpack_spatial_convolution)
def _nnpack_conv_flop(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """detzoo's Winograd (NNPACK) 3x3 convolutions count as the direct convolution they compute,
    so both sides' FLOPs are the same arithmetic (Winograd does fewer multiplications for it)."""
    return conv_flop_count(x_shape, w_shape, out_shape)


def count_flops(fn: Callable[[], object]) -> int:
    """Runs ``fn`` once under FlopCounterMode and returns its FLOPs (2 per multiply-add)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@torch.no_grad()
def dense_throughput(repeats: int = 3) -> list[float]:
    """GFLOP/s of ``repeats`` runs of a 3x3 256->256 conv on [1, 256, 100, 152] (P3 of 800x1216)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 256, 100, 152, generator=g)
    w = torch.randn(256, 256, 3, 3, generator=g) * 0.02
    flops = 2 * 256 * 256 * 9 * 100 * 152
    F.conv2d(x, w, padding=1)
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        F.conv2d(x, w, padding=1)
        samples.append(flops / (time.perf_counter() - t0) / 1e9)
    return samples


def flop_table(rows: list[tuple[str, int, int, float, float]], gflops_per_s: float) -> str:
    """Markdown: per case GFLOPs of each side, the floor they imply and how far the fastest run of
    each side is from it."""
    out = [
        "| case | detzoo GFLOP | torchvision GFLOP | detzoo floor (ms) | detzoo fastest / floor "
        "| torchvision floor (ms) | torchvision fastest / floor |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, ours, ref, ours_ms, ref_ms in rows:
        ours_floor = ours / gflops_per_s / 1e6
        ref_floor = ref / gflops_per_s / 1e6
        out.append(
            f"| {name} | {ours / 1e9:.1f} | {ref / 1e9:.1f} | {ours_floor:.0f} "
            f"| {ours_ms / ours_floor:.2f}x | {ref_floor:.0f} | {ref_ms / ref_floor:.2f}x |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per side (after 1 warm-up)"
    )
    parser.add_argument("--models", default=",".join(MODEL_NAMES), help="comma-separated")
    parser.add_argument("--no-train", action="store_true", help="inference cases only")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = tuple(m for m in args.models.split(",") if m)
    start = time.perf_counter()

    # sampled before every case and at the end: the best is what this machine can do, the spread
    # and the load average show how much other processes took from this run
    throughput, loads = [], [os.getloadavg()[0]]
    results, fastest, flop_rows = [], [], []
    for case in cases(models, train=not args.no_train):
        throughput += dense_throughput()
        flops_ours, flops_ref = count_flops(case.ours), count_flops(case.reference)
        ours_s, ref_s = [], []
        timed = dataclasses.replace(
            case, ours=recording(case.ours, ours_s), reference=recording(case.reference, ref_s)
        )
        result = time_interleaved(timed, repeats=args.repeats, warmup=0)
        fastest.append(
            Result(case.name, 1e3 * min(ours_s), 1e3 * min(ref_s), case.target, case.reference_name)
        )
        loads.append(os.getloadavg()[0])
        print(
            f"{case.name}: {result.ours_ms:.0f} vs {result.reference_ms:.0f} ms, "
            f"{result.speedup:.2f}x (load {loads[-1]:.1f}, {time.perf_counter() - start:.0f} s elapsed)",
            file=sys.stderr,
            flush=True,
        )
        results.append(result)
        flop_rows.append(
            (case.name, flops_ours, flops_ref, fastest[-1].ours_ms, fastest[-1].reference_ms)
        )
    throughput += dense_throughput()

    best = max(throughput)
    print(
        f"torch {torch.__version__}, {args.threads} threads, "
        f"{platform.processor() or platform.machine()}, medians of {args.repeats} interleaved "
        f"runs after 1 FLOP-counted warm-up each; {time.perf_counter() - start:.0f} s in all; "
        f"1-min load average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores\n"
    )
    print(format_table(results))
    print(
        "\nFastest of the same runs (closest to an idle machine when other processes share the "
        "cores):\n"
    )
    print(format_table(fastest))
    print(
        f"\nFloor = FLOPs / {best:.1f} GFLOP/s: the best of {len(throughput)} runs of a 3x3 conv "
        f"256->256 on 1x256x100x152 sampled through the run (median {statistics.median(throughput):.1f}, "
        f"worst {min(throughput):.1f} GFLOP/s). FLOPs: conv/matmul only (FlopCounterMode).\n"
    )
    print(flop_table(flop_rows, best))


if __name__ == "__main__":
    main()
