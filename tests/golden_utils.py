"""Helpers for the Detectron2 fidelity tests on ``../shared/golden`` (see its README).

The golden weights are a pure function of each parameter's Detectron2 name and shape; they are
rebuilt here, checked against ``params.json``, and saved as a Detectron2-format checkpoint
(``{"model": {name: ndarray}}``) for detzoo's converter.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.ops import box_iou

from detzoo.structures import segmentations_to_bitmaps
from detzoo.zoo.detectron2 import load_detectron2_weights

IMAGES = ("astronaut.png", "coffee.png")  # run as one batch, in this order
# CI sets this: a missing golden fixture is then a failure, so a green run has run every one
REQUIRE_GOLDEN = os.environ.get("DETZOO_REQUIRE_GOLDEN") == "1"


def skip_without_golden(reason: str) -> None:
    """Skip a test whose golden fixture is missing; fail instead under DETZOO_REQUIRE_GOLDEN=1."""
    if REQUIRE_GOLDEN:
        pytest.fail(f"{reason} (DETZOO_REQUIRE_GOLDEN=1: every golden fixture must be present)")
    pytest.skip(reason)


def golden_value(name: str, shape: list[int]) -> torch.Tensor:
    """The deterministic value Detectron2 ran with for parameter ``name`` of ``shape``."""
    g = torch.Generator().manual_seed(zlib.crc32(name.encode("utf-8")))
    if name.endswith("running_mean"):
        return 0.1 * torch.randn(shape, generator=g)
    if name.endswith("running_var"):
        return 0.5 + torch.rand(shape, generator=g)
    if len(shape) == 1 and name.endswith("weight"):
        return 1.0 + 0.1 * torch.randn(shape, generator=g)
    if len(shape) == 1 and name.endswith("bias"):
        return 0.1 * torch.randn(shape, generator=g)
    fan_in = math.prod(shape[1:])
    gain = (
        1.0 / 58
        if "stem" in name
        else 0.1
        if ("anchor_deltas" in name or "bbox_pred" in name)
        else 1.0
    )
    return torch.randn(shape, generator=g) * math.sqrt(1.0 / fan_in) * gain


def golden_weights(params_json: Path) -> dict[str, np.ndarray]:
    """Detectron2-named float32 arrays for every entry of ``params.json``, checked against its
    ``sum`` and ``first`` (relative 1e-6)."""
    params = json.loads(Path(params_json).read_text())
    weights = {}
    for name, spec in params.items():
        value = golden_value(name, spec["shape"])
        total = float(value.double().sum())
        first = float(value.reshape(-1)[0]) if value.numel() else 0.0
        if "sum" in spec and not math.isclose(total, spec["sum"], rel_tol=1e-6, abs_tol=1e-6):
            raise AssertionError(f"golden weight {name}: sum {total} != {spec['sum']}")
        if "first" in spec and not math.isclose(first, spec["first"], rel_tol=1e-6, abs_tol=1e-9):
            raise AssertionError(f"golden weight {name}: first {first} != {spec['first']}")
        weights[name] = value.numpy()
    return weights


def load_golden_model(model: torch.nn.Module, arch_dir: Path, tmp_dir: Path) -> torch.nn.Module:
    """Writes the golden weights of ``arch_dir`` as a Detectron2-format checkpoint
    ``tmp_dir / "model_final.pkl"``, loads them into ``model`` through detzoo's converter
    (:func:`detzoo.zoo.detectron2.load_detectron2_weights`, strict: every weight used, none
    missing) and returns the model in eval mode."""
    checkpoint = Path(tmp_dir) / "model_final.pkl"
    checkpoint.write_bytes(pickle.dumps({"model": golden_weights(Path(arch_dir) / "params.json")}))
    load_detectron2_weights(model, checkpoint)
    return model.eval()


def golden_images(golden_dir: Path) -> list[torch.Tensor]:
    """The two photos as uint8 RGB ``[3, H, W]`` tensors."""
    out = []
    for name in IMAGES:
        array = np.asarray(Image.open(golden_dir / "images" / name).convert("RGB"))
        out.append(torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous())
    return out


def golden_outputs(arch_dir: Path) -> tuple[dict[str, torch.Tensor], dict]:
    """``outputs.pt`` tensors and ``outputs.json``."""
    tensors = torch.load(arch_dir / "outputs.pt", weights_only=True)
    meta = json.loads((arch_dir / "outputs.json").read_text())
    return tensors, meta


def match_as_sets(
    gold_boxes: torch.Tensor,
    gold_scores: torch.Tensor,
    ours_boxes: torch.Tensor,
    ours_scores: torch.Tensor,
    gold_classes: torch.Tensor | None = None,
    ours_classes: torch.Tensor | None = None,
    score_tol: float = 1e-4,
    box_tol: float = 0.01,
) -> list[tuple[int, int]]:
    """The README's rule: every golden instance whose score exceeds the lowest golden score by more
    than ``score_tol`` must match a detzoo instance of the same class with box IoU >= 0.999, box
    within ``box_tol`` px and score within ``score_tol``. Returns (golden, ours) index pairs of all
    matched instances; raises AssertionError describing the first failure."""
    if len(gold_boxes) == 0:
        return []
    iou = box_iou(gold_boxes.double(), ours_boxes.double()) if len(ours_boxes) else None
    must_match = gold_scores > gold_scores.min() + score_tol
    pairs, used = [], set()
    for i in range(len(gold_boxes)):
        candidates = []
        if iou is not None:
            ok = iou[i] >= 0.999
            if gold_classes is not None:
                ok &= ours_classes == gold_classes[i]
            ok &= (ours_scores - gold_scores[i]).abs() <= score_tol
            ok &= (ours_boxes - gold_boxes[i]).abs().max(dim=1).values <= box_tol
            candidates = [j for j in torch.nonzero(ok).flatten().tolist() if j not in used]
        if candidates:
            j = min(candidates, key=lambda j: float((ours_scores[j] - gold_scores[i]).abs()))
            used.add(j)
            pairs.append((i, j))
        elif must_match[i]:
            cls = "" if gold_classes is None else f" class {int(gold_classes[i])}"
            near = "none"
            if iou is not None and iou.shape[1]:
                j = int(iou[i].argmax())
                near = f"box {ours_boxes[j].tolist()} score {float(ours_scores[j]):.6f} IoU {float(iou[i, j]):.6f}"
            raise AssertionError(
                f"golden instance {i}{cls} box {gold_boxes[i].tolist()} score {float(gold_scores[i]):.6f} "
                f"has no detzoo match; nearest: {near}"
            )
    return pairs


def match_golden_instances(
    gold: dict[str, torch.Tensor], pred: dict[str, torch.Tensor], image: int
) -> list[tuple[int, int]]:
    """The README's set rule (:func:`match_as_sets`) for the final instances of image ``image``:
    golden ``instances/{image}/...`` against ``pred``'s boxes, scores and labels, same class
    required. Returns the matched (golden, ours) pairs."""
    return match_as_sets(
        gold[f"instances/{image}/boxes"],
        gold[f"instances/{image}/scores"],
        pred["boxes"],
        pred["scores"],
        gold[f"instances/{image}/classes"],
        pred["labels"],
    )


def assert_golden_proposals_match(
    gold: dict[str, torch.Tensor], proposals: dict[str, torch.Tensor], image: int
) -> None:
    """The RPN proposals of image ``image`` (``proposals``: that image's dict) match Detectron2's:
    the same count, and boxes / objectness logits as sets by the README's rule."""
    gold_boxes = gold[f"proposals/{image}/boxes"]
    assert len(proposals["boxes"]) == len(gold_boxes)
    match_as_sets(
        gold_boxes,
        gold[f"proposals/{image}/objectness_logits"],
        proposals["boxes"],
        proposals["objectness_logits"],
    )


def golden_masks(image_meta: dict) -> torch.Tensor:
    """Bool ``[N, H, W]`` instance masks of one image of ``outputs.json`` (its ``masks_rle``, in
    instance order)."""
    height, width = image_meta["height"], image_meta["width"]
    return torch.from_numpy(segmentations_to_bitmaps(image_meta["masks_rle"], height, width)).bool()


def assert_masks_match(
    gold_masks: torch.Tensor,
    ours_masks: torch.Tensor,
    pairs: list[tuple[int, int]],
    min_iou: float = 0.99,
) -> None:
    """The README's mask rule: every matched (golden, ours) pair of bool ``[H, W]`` masks has mask
    IoU >= ``min_iou`` (two empty masks agree); raises AssertionError naming the worst pair."""
    if not pairs:
        return
    gold = gold_masks[[i for i, _ in pairs]].flatten(1)
    ours = ours_masks[[j for _, j in pairs]].flatten(1).bool()
    inter = (gold & ours).sum(1).double()
    union = (gold | ours).sum(1).double()
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    worst = int(iou.argmin())
    if float(iou[worst]) < min_iou:
        i, j = pairs[worst]
        raise AssertionError(
            f"golden instance {i} vs detzoo instance {j}: mask IoU {float(iou[worst]):.4f} < "
            f"{min_iou} ({int((iou < min_iou).sum())} of {len(pairs)} matched masks below)"
        )
