"""Whole-model cases: detzoo Faster R-CNN / RetinaNet R50-FPN against torchvision's, same work.

Both sides get the same photos, reach the backbone at the same size and return the same number
of detections:

- **detzoo** models are built exactly as the Detectron2 fidelity tests build them
  (``tests/models/test_golden.py``: ``FPN(ResNet(50))`` with FrozenBN, ``freeze_at=2``,
  80 classes, ``score_thresh=0``).
- **torchvision** models are what ``fasterrcnn_resnet50_fpn`` / ``retinanet_resnet50_fpn`` build
  with an ImageNet backbone (FrozenBN everywhere, ``trainable_backbone_layers=3`` = layer2-4, the
  same three stages as detzoo's ``freeze_at=2`` trains: res3-res5). Their builders switch to plain
  BatchNorm and train all layers when no weights are given, so the same parts are assembled here
  via ``resnet_fpn_backbone`` (its defaults are FrozenBN and 3 trainable layers). 81 classes with
  background for Faster R-CNN, 80 for RetinaNet; ``box_score_thresh=0`` / ``score_thresh=0``,
  100 detections per image; ``min_size``/``max_size`` chosen so the images are not resized
  (checked: the transformed batch has the input's size).
- Faster R-CNN training: torchvision's ``rpn_post_nms_top_n_train`` is set to 1000, Detectron2's
  ``POST_NMS_TOPK_TRAIN`` (torchvision's default 2000 would give it more proposals to match).
- Architecture kept as each library defines it: detzoo's ResNet strides in the 1x1 conv
  (Detectron2's MSRA layout; torchvision's in the 3x3), detzoo's RetinaNet computes P6 from C5
  (2048 channels; torchvision v1 from P5). The FLOP counts printed with the table show the effect.

Random weights with identity FrozenBN statistics let activations grow through 50 layers (detzoo's
FPN features reach ~1e3 and its RPN then proposes one full-image box). Both sides are therefore
calibrated the same way before timing: every FrozenBN gets the mean and variance of its input on a
half-size copy of the first photo (one forward), as a trained network would have, so features are
O(1), the RPN proposes 1000 boxes and both models keep exactly 100 detections (asserted on every
timed run).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from timing import Case
from torch import nn
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from detzoo.layers.norm import FrozenBatchNorm2d

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.models.test_golden import MODELS as DETZOO_BUILDERS  # noqa: E402

MODEL_NAMES = ("faster_rcnn", "retinanet")
TARGET = 1.15
INFER_SIZE = (800, 1216)  # (height, width)
TRAIN_SIZE = (512, 683)
DETECTIONS = 100
PHOTOS = ROOT.parent / "shared" / "golden" / "images"
_GOLDEN_NAME = {"faster_rcnn": "faster_rcnn_R50_FPN", "retinanet": "retinanet_R50_FPN"}


# ---- inputs ------------------------------------------------------------------------------
def photo(index: int, size: tuple[int, int]) -> torch.Tensor:
    """float32 RGB 0-255 ``[3, H, W]``: golden photo ``index`` (astronaut, coffee) resized to
    ``size``, or smooth random noise (upsampled 1/16-scale noise) when the photos are absent."""
    names = ("astronaut.png", "coffee.png")
    path = PHOTOS / names[index % 2]
    if path.is_file():
        from PIL import Image

        img = Image.open(path).convert("RGB").resize(size[::-1], Image.BILINEAR)
        return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().contiguous()
    g = torch.Generator().manual_seed(index)
    coarse = torch.rand(1, 3, size[0] // 16, size[1] // 16, generator=g) * 255
    return F.interpolate(coarse, size=size, mode="bicubic", align_corners=False)[0].clamp(0, 255)


def train_targets(num_images: int) -> list[dict[str, torch.Tensor]]:
    """Three fixed ground-truth boxes per image (XYXY pixels in a 512x683 image), detzoo labels
    0-79 (torchvision Faster R-CNN gets +1: its class 0 is background)."""
    boxes = torch.tensor(
        [[40.0, 60.0, 260.0, 420.0], [300.0, 90.0, 640.0, 330.0], [150.0, 250.0, 230.0, 500.0]]
    )
    return [
        {"boxes": boxes + 13.0 * i, "labels": torch.tensor([0, 17, 56]) + i}
        for i in range(num_images)
    ]


# ---- models ------------------------------------------------------------------------------
def detzoo_model(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = DETZOO_BUILDERS[_GOLDEN_NAME[name]]()
    model.set_test_thresholds(score_thresh=0.0, detections_per_image=DETECTIONS)
    return model


def torchvision_model(name: str, min_size: int) -> nn.Module:
    torch.manual_seed(0)
    detection = torchvision.models.detection
    sizes = {"min_size": min_size, "max_size": 1333}
    if name == "faster_rcnn":
        backbone = resnet_fpn_backbone(backbone_name="resnet50", weights=None, trainable_layers=3)
        return detection.FasterRCNN(
            backbone, num_classes=81, box_score_thresh=0.0, box_detections_per_img=DETECTIONS,
            rpn_post_nms_top_n_train=1000, **sizes,
        )  # fmt: skip
    backbone = resnet_fpn_backbone(
        backbone_name="resnet50", weights=None, trainable_layers=3, returned_layers=[2, 3, 4],
        extra_blocks=LastLevelP6P7(256, 256),
    )  # fmt: skip
    return detection.RetinaNet(
        backbone, num_classes=80, score_thresh=0.0, detections_per_img=DETECTIONS, **sizes
    )


@torch.no_grad()
def calibrate(model: nn.Module, images: list[torch.Tensor]) -> None:
    """Sets every FrozenBN's statistics to those of its input on ``images`` (one eval forward)."""
    frozen = (FrozenBatchNorm2d, torchvision.ops.misc.FrozenBatchNorm2d)

    def set_stats(module: nn.Module, args: tuple) -> None:
        x = args[0]
        module.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        module.running_var.copy_(x.var(dim=(0, 2, 3)).clamp(min=1e-4))

    hooks = [
        m.register_forward_pre_hook(set_stats) for m in model.modules() if isinstance(m, frozen)
    ]
    was_training = model.training
    model.eval()
    try:
        model(images)
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)


def _pair(name: str, tv_min_size: int) -> tuple[nn.Module, nn.Module]:
    """Calibrated (detzoo, torchvision) models; torchvision takes 0-1 input, detzoo 0-255."""
    ours, ref = detzoo_model(name), torchvision_model(name, tv_min_size)
    half = F.interpolate(photo(0, INFER_SIZE)[None], scale_factor=0.5, mode="bilinear")[0]
    calibrate(ours, [half])
    calibrate(ref, [half / 255])
    return ours, ref


def _check_not_resized(model: nn.Module, images: list[torch.Tensor], targets=None) -> None:
    was_training = model.training
    model.train(targets is not None)
    batch, _ = model.transform([x / 255 for x in images], targets)
    model.train(was_training)
    sizes = [tuple(x.shape[-2:]) for x in images]
    if list(map(tuple, batch.image_sizes)) != sizes:
        raise AssertionError(f"torchvision resized {sizes} to {batch.image_sizes}")


# ---- cases -------------------------------------------------------------------------------
def _detections(out: list[dict[str, torch.Tensor]], who: str) -> None:
    counts = [len(d["boxes"]) for d in out]
    if counts != [DETECTIONS] * len(out):
        raise AssertionError(f"{who} produced {counts} detections, expected {DETECTIONS} each")


def inference_case(name: str) -> Case:
    """One 800x1216 photo, eval mode, no grad; both sides must return exactly 100 detections."""
    ours, ref = _pair(name, tv_min_size=INFER_SIZE[0])
    ours.eval(), ref.eval()
    image = photo(0, INFER_SIZE)
    image01 = image / 255
    _check_not_resized(ref, [image])

    @torch.no_grad()
    def run_ours():
        out = ours([image])
        _detections(out, f"detzoo {name}")
        return out

    @torch.no_grad()
    def run_ref():
        out = ref([image01])
        _detections(out, f"torchvision {name}")
        return out

    h, w = INFER_SIZE
    return Case(f"{name} R50-FPN inference, 1x{h}x{w}", run_ours, run_ref, target=TARGET)


def _train_step(model: nn.Module, images, targets) -> Callable[[], float]:
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=1e-3, momentum=0.9, weight_decay=1e-4)

    def step() -> float:
        losses = model(images, targets)
        loss = sum(losses.values())
        if not torch.isfinite(loss):
            raise AssertionError(f"non-finite training loss {losses}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def train_case(name: str) -> Case:
    """Forward + backward + SGD step on two 512x683 photos with three boxes each, train mode."""
    ours, ref = _pair(name, tv_min_size=TRAIN_SIZE[0])
    ours.train(), ref.train()
    images = [photo(0, TRAIN_SIZE), photo(1, TRAIN_SIZE)]
    targets = train_targets(len(images))
    offset = 1 if name == "faster_rcnn" else 0
    ref_targets = [{"boxes": t["boxes"], "labels": t["labels"] + offset} for t in targets]
    _check_not_resized(ref, images, ref_targets)
    trainable = sum(p.numel() for p in ours.backbone.bottom_up.parameters() if p.requires_grad)
    ref_trainable = sum(p.numel() for p in ref.backbone.body.parameters() if p.requires_grad)
    if trainable != ref_trainable:  # res3-res5 vs layer2-layer4
        raise AssertionError(f"trainable ResNet parameters differ: {trainable} vs {ref_trainable}")
    h, w = TRAIN_SIZE
    return Case(
        f"{name} R50-FPN train step, 2x{h}x{w}",
        _train_step(ours, images, targets),
        _train_step(ref, [x / 255 for x in images], ref_targets),
        target=TARGET,
    )


def cases(models: tuple[str, ...] = MODEL_NAMES, train: bool = True) -> Iterator[Case]:
    """Built lazily (one case's four-model set at a time) so earlier models can be freed."""
    for name in models:
        if name not in MODEL_NAMES:
            raise ValueError(f"unknown model {name!r}; choose from {', '.join(MODEL_NAMES)}")
        yield inference_case(name)
        if train:
            yield train_case(name)
