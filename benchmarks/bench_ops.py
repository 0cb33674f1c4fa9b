"""Times every detzoo op against its reference (torchvision, or the pure-PyTorch path) in one run.

    python benchmarks/bench_ops.py [--threads 2] [--repeats 7] [--only nms,roi_align]

Each op family contributes its cases from ``benchmarks/cases_<family>.py``; each case is timed
interleaved with its reference (see timing.py) and a Markdown table of medians and speed-ups is
printed, ready for RESULTS.md.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import format_table, time_interleaved  # noqa: E402

FAMILIES = ("cases_roi_align", "cases_nms", "cases_rotated", "cases_paste_masks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--only", default="", help="comma-separated substrings of case names")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    wanted = [w for w in args.only.split(",") if w]

    results = []
    for family in FAMILIES:
        for case in importlib.import_module(family).cases():
            if wanted and not any(w in case.name for w in wanted):
                continue
            result = time_interleaved(case, repeats=args.repeats)
            print(f"{case.name}: {result.speedup:.2f}x", file=sys.stderr, flush=True)
            results.append(result)
    print(
        f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, "
        f"medians of {args.repeats} interleaved runs\n"
    )
    print(format_table(results))


if __name__ == "__main__":
    main()
