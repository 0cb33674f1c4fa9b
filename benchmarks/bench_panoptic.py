"""What Panoptic FPN adds to Mask R-CNN at inference: CPU latency of detzoo PanopticFPN R50-FPN
against the same model's Mask R-CNN part, in the same run.

    python benchmarks/bench_panoptic.py [--threads 2] [--repeats 5]

Both models hold the same weights (Detectron2's panoptic_fpn_R50 architecture with the golden
fixture's weights from ``../shared/golden``, or random weights with calibrated FrozenBN
statistics when the fixtures are absent; the Mask R-CNN gets every weight but the semantic head's)
and see one 800x1216 photo with score thresholds 0, so both predict 100 instances with masks at
image size, and Panoptic FPN also its semantic logits at image size and the panoptic merge of
all 100 instances. The difference is the semantic head (towers, predictor, 4x upsampling, resize
to the image), the argmax and the merge. Prints a Markdown table (reference: Mask R-CNN) and a
breakdown of the extra time, measured on the same image.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases_models import INFER_SIZE, calibrate, photo  # noqa: E402
from timing import Case, format_table, time_interleaved  # noqa: E402

from detzoo.backbones import FPN, LastLevelMaxPool, ResNet  # noqa: E402
from detzoo.models import MaskRCNN, PanopticFPN  # noqa: E402
from detzoo.models.postprocess import rescale_semantic  # noqa: E402
from detzoo.zoo.detectron2 import load_detectron2_weights  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.golden_utils import golden_weights  # noqa: E402

GOLDEN = ROOT.parent / "shared" / "golden" / "panoptic_fpn_R50" / "params.json"
#: our bar: Panoptic FPN at most ~18% slower than the Mask R-CNN it contains
TARGET = 0.85


def models() -> tuple[PanopticFPN, MaskRCNN, str]:
    """(PanopticFPN, MaskRCNN) with shared weights, in eval mode, and where the weights came from."""
    torch.manual_seed(0)
    panoptic = PanopticFPN(
        FPN(ResNet(50), top_block=LastLevelMaxPool()), num_classes=80, num_stuff_classes=53
    )
    if GOLDEN.is_file():
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model_final.pkl"
            path.write_bytes(pickle.dumps({"model": golden_weights(GOLDEN)}))
            load_detectron2_weights(panoptic, path)
        source = "golden fixture weights"
    else:
        half = photo(0, (INFER_SIZE[0] // 2, INFER_SIZE[1] // 2))
        calibrate(panoptic, [half])
        source = "random weights, calibrated FrozenBN"
    mask = MaskRCNN(FPN(ResNet(50), top_block=LastLevelMaxPool()), num_classes=80)
    shared = {k: v for k, v in panoptic.state_dict().items() if not k.startswith("sem_seg_head.")}
    mask.load_state_dict(shared, strict=True)
    for model in (panoptic, mask):
        model.set_test_thresholds(score_thresh=0.0)
        model.eval()
    return panoptic, mask, source


def _timed(fn, repeats: int) -> float:
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(samples)


@torch.no_grad()
def breakdown(panoptic: PanopticFPN, image: torch.Tensor, repeats: int) -> list[tuple[str, float]]:
    """Median ms of each piece Panoptic FPN adds, on ``image``."""
    batch = panoptic.preprocess([image])
    features = panoptic.backbone(batch.tensor)
    head = panoptic.sem_seg_head
    size = tuple(image.shape[-2:])
    logits = head(features)[0]
    semantic = rescale_semantic(logits[:, : size[0], : size[1]], size)
    pred = panoptic([image])[0]
    argmax = semantic.argmax(0)
    return [
        (
            "semantic head (towers, predictor, 4x upsampling)",
            _timed(lambda: head(features), repeats),
        ),
        ("argmax of 54 x H x W logits", _timed(lambda: semantic.argmax(0), repeats)),
        (
            "panoptic merge (100 instances + stuff)",
            _timed(
                lambda: panoptic.merge(pred["scores"], pred["labels"], pred["masks"], argmax),
                repeats,
            ),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    panoptic, mask, source = models()
    image = photo(0, INFER_SIZE)

    @torch.no_grad()
    def run_panoptic():
        out = panoptic([image])[0]
        assert len(out["boxes"]) == 100 and out["sem_seg"].shape[-2:] == INFER_SIZE
        return out

    @torch.no_grad()
    def run_mask():
        out = mask([image])[0]
        assert len(out["boxes"]) == 100
        return out

    h, w = INFER_SIZE
    case = Case(
        f"panoptic_fpn R50-FPN inference, 1x{h}x{w}",
        run_panoptic,
        run_mask,
        target=TARGET,
        reference_name="detzoo Mask R-CNN, same weights",
    )
    result = time_interleaved(case, repeats=args.repeats, warmup=1)
    pieces = breakdown(panoptic, image, args.repeats)
    print(
        f"torch {torch.__version__}, {args.threads} threads, "
        f"{platform.processor() or platform.machine()}, {source}, medians of {args.repeats} "
        f"interleaved runs after 1 warm-up; {time.perf_counter() - start:.0f} s in all; 1-min "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores\n"
    )
    print(format_table([result]))
    extra = result.ours_ms - result.reference_ms
    print(
        f"\nPanoptic FPN adds {extra:.0f} ms ({100 * extra / result.reference_ms:.1f}% of Mask "
        f"R-CNN's {result.reference_ms:.0f} ms). Its pieces, timed alone:\n"
    )
    print("| piece | ms |\n| --- | ---: |")
    for name, ms in pieces:
        print(f"| {name} | {ms:.1f} |")


if __name__ == "__main__":
    main()
