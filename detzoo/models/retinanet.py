"""RetinaNet (Detectron2's one-stage dense detector with focal loss)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from detzoo.config import build
from detzoo.heads.anchors import AnchorGenerator
from detzoo.heads.retinanet import RetinaNetHead, RetinaNetOutputs, flatten_per_anchor
from detzoo.models.base import DetectionModel
from detzoo.structures.image_list import ImageList

RETINANET_LEVELS = ("p3", "p4", "p5", "p6", "p7")


def default_anchor_generator(backbone: nn.Module, in_features: Sequence[str]) -> AnchorGenerator:
    """Three sizes per octave (x, x·2^(1/3), x·2^(2/3)) for x = 32…512 on p3–p7, three ratios."""
    shapes = backbone.output_shape()
    sizes = [[x * 2 ** (i / 3.0) for i in range(3)] for x in (32, 64, 128, 256, 512)]
    return AnchorGenerator(sizes, [[0.5, 1.0, 2.0]], [shapes[f].stride for f in in_features])


class RetinaNet(DetectionModel):
    """RetinaNet as a LightningModule.

    Args:
        backbone: an FPN with ``p3``–``p7`` outputs (``LastLevelP6P7`` top block).
        num_classes: number of foreground classes.
        in_features: pyramid levels the head runs on.
        anchor_generator, head, outputs: replace the Detectron2 defaults.
        smooth_l1_beta: box regression loss beta of the default ``outputs`` (Detectron2's
            ``RETINANET.SMOOTH_L1_LOSS_BETA``: 0.1 in its defaults, 0.0 in every COCO recipe).
        score_thresh, topk_candidates, nms_thresh, detections_per_image: test-time decoding;
            they apply to ``outputs`` too when it is given.
        **kwargs: :class:`~detzoo.models.base.DetectionModel` arguments.

    The running loss normaliser (``outputs.loss_normalizer``, Detectron2's EMA of the foreground
    anchor count) is saved with the weights, so a resumed fit goes on exactly; checkpoints without
    it (Detectron2's, detzoo's from before it was saved) still load strictly, leaving its initial
    100 (:attr:`OPTIONAL_STATE_KEYS`).
    """

    #: state-dict keys (regexes) a checkpoint may lack; the model keeps its own values for them
    OPTIONAL_STATE_KEYS = (r"^outputs\.loss_normalizer$",)

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        in_features: Sequence[str] = RETINANET_LEVELS,
        anchor_generator: AnchorGenerator | None = None,
        head: RetinaNetHead | None = None,
        outputs: RetinaNetOutputs | None = None,
        smooth_l1_beta: float = 0.1,
        score_thresh: float = 0.05,
        topk_candidates: int = 1000,
        nms_thresh: float = 0.5,
        detections_per_image: int = 100,
        **kwargs,
    ):
        backbone = build(backbone)
        missing = [f for f in in_features if f not in backbone.output_shape()]
        if missing:
            raise ValueError(
                f"RetinaNet runs on {list(in_features)} but the backbone has no {missing}; use an FPN "
                f"with LastLevelP6P7 (outputs {sorted(backbone.output_shape())})"
            )
        super().__init__(**kwargs)
        self.backbone = backbone
        self.in_features = list(in_features)
        self.anchor_generator = build(anchor_generator) or default_anchor_generator(
            backbone, in_features
        )
        channels = backbone.output_shape()[in_features[0]].channels
        self.head = build(head) or RetinaNetHead(
            channels, self.anchor_generator.num_anchors_per_cell[0], num_classes
        )
        self.outputs = build(outputs) or RetinaNetOutputs(
            num_classes, smooth_l1_beta=smooth_l1_beta
        )
        self.num_classes = num_classes
        self.set_test_thresholds(
            score_thresh=score_thresh,
            topk_candidates=topk_candidates,
            nms_thresh=nms_thresh,
            detections_per_image=detections_per_image,
        )

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        # a Lightning checkpoint from before the normaliser was saved: Lightning's strict load
        # (resuming a fit, load_from_checkpoint) would refuse it; it keeps the model's value
        state = checkpoint.get("state_dict")
        normaliser = getattr(self.outputs, "loss_normalizer", None)
        if isinstance(state, dict) and normaliser is not None:
            state.setdefault("outputs.loss_normalizer", normaliser.detach().clone())

    def _dense(
        self, images: ImageList
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        features = self.backbone(images.tensor)
        feats = [features[f] for f in self.in_features]
        anchors = self.anchor_generator(feats)
        logits, deltas = self.head(feats)
        logits = [flatten_per_anchor(x, self.num_classes) for x in logits]
        deltas = [flatten_per_anchor(x, 4) for x in deltas]
        return anchors, logits, deltas

    def compute_losses(
        self, images: ImageList, targets: Sequence[Mapping[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        anchors, logits, deltas = self._dense(images)
        return self.outputs.losses(
            torch.cat(anchors),
            torch.cat(logits, dim=1),
            torch.cat(deltas, dim=1),
            [t["boxes"] for t in targets],
            [t["labels"] for t in targets],
        )

    def detect(self, images: ImageList) -> list[dict[str, torch.Tensor]]:
        anchors, logits, deltas = self._dense(images)
        return [
            self.outputs.inference(anchors, [x[i] for x in logits], [d[i] for d in deltas])
            for i in range(len(images))
        ]

    def test_time_modules(self) -> list[nn.Module]:
        return [self.outputs]
