"""Panoptic FPN (Detectron2's ``PanopticFPN``): Mask R-CNN and a semantic FPN head on one FPN
backbone, merged into a panoptic segmentation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from detzoo.config import build
from detzoo.evaluation import PanopticFPNEvaluator, PanopticResultsWriter, SemSegEvaluator
from detzoo.heads.panoptic_merge import PanopticMerge
from detzoo.heads.rpn import RPN
from detzoo.heads.semantic_fpn import SemSegFPNHead
from detzoo.models.mask_rcnn import MaskRCNN
from detzoo.models.postprocess import rescale_detections, rescale_semantic
from detzoo.models.semantic_fpn import default_sem_seg_head, semantic_logits, semantic_losses
from detzoo.structures.image_list import ImageList


class PanopticFPN(MaskRCNN):
    """Panoptic FPN as a LightningModule.

    Predictions add to Mask R-CNN's: ``sem_seg`` float ``[1 + S, H, W]`` semantic logits at the
    output size (channel 0: all things, ``1 + i``: the i-th stuff class), ``panoptic_seg``
    int32 ``[H, W]`` (segment id per pixel, 0 = void) and ``segments_info`` (one dict per
    segment, as :func:`~detzoo.heads.panoptic_merge.combine_semantic_and_instance_outputs`:
    ``category_id`` is the thing class for things, the semantic channel for stuff). Validation
    reports box and mask AP, mIoU of the semantic head and PQ/SQ/RQ (all, things, stuff).
    Training targets need the instance fields and ``sem_seg`` (:class:`detzoo.data.CocoPanoptic`).

    Args:
        backbone: an FPN backbone (``FPN(ResNet(depth=50), top_block=LastLevelMaxPool())``).
        num_classes: thing classes.
        num_stuff_classes: stuff classes ``S`` (the semantic head predicts ``1 + S``).
        sem_seg_head: replaces :func:`~detzoo.models.semantic_fpn.default_sem_seg_head`.
        sem_seg_loss_weight: the default semantic head's loss weight (Detectron2's
            ``SEM_SEG_HEAD.LOSS_WEIGHT``, 0.5 in the Panoptic FPN recipes).
        instance_loss_weight: multiplies the ROI heads' losses (box and mask; not the RPN's), as
            Detectron2's ``PANOPTIC_FPN.INSTANCE_LOSS_WEIGHT``.
        overlap_thresh, stuff_area_thresh, instances_score_thresh: the merge's settings
            (``PANOPTIC_FPN.COMBINE``); ``set_test_thresholds(score_thresh=...)`` sets the box
            predictor's and ``instances_score_thresh`` together.
        rpn, roi_heads, cls_agnostic_mask, score_thresh, nms_thresh, detections_per_image:
            as :class:`~detzoo.models.MaskRCNN`.
        **kwargs: :class:`~detzoo.models.base.DetectionModel` arguments.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        num_stuff_classes: int,
        sem_seg_head: SemSegFPNHead | None = None,
        sem_seg_loss_weight: float = 0.5,
        instance_loss_weight: float = 1.0,
        overlap_thresh: float = 0.5,
        stuff_area_thresh: int = 4096,
        instances_score_thresh: float = 0.5,
        rpn: RPN | None = None,
        roi_heads: nn.Module | None = None,
        cls_agnostic_mask: bool = False,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_image: int = 100,
        **kwargs,
    ):
        backbone = build(backbone)
        head = (
            build(sem_seg_head)
            if sem_seg_head is not None
            else default_sem_seg_head(backbone, 1 + num_stuff_classes, sem_seg_loss_weight)
        )
        if head.num_classes != 1 + num_stuff_classes:
            raise ValueError(
                f"num_stuff_classes is {num_stuff_classes}, so the semantic head must predict "
                f"{1 + num_stuff_classes} classes (things + stuff); it predicts {head.num_classes}"
            )
        super().__init__(
            backbone,
            num_classes,
            rpn=rpn,
            roi_heads=roi_heads,
            cls_agnostic_mask=cls_agnostic_mask,
            score_thresh=score_thresh,
            nms_thresh=nms_thresh,
            detections_per_image=detections_per_image,
            **kwargs,
        )
        self.sem_seg_head = head
        self.num_stuff_classes = num_stuff_classes
        self.instance_loss_weight = instance_loss_weight
        self.merge = PanopticMerge(overlap_thresh, stuff_area_thresh, instances_score_thresh)

    def test_time_modules(self) -> list:
        merge = getattr(self, "merge", None)
        return [*super().test_time_modules(), *([merge] if merge is not None else [])]

    def set_test_thresholds(self, **values: float | int | None) -> None:
        super().set_test_thresholds(**values)
        if values.get("score_thresh") is not None:
            spec = getattr(self, "_detzoo_spec", None)
            for record in (self.hparams, spec["init_args"] if spec else {}):
                if "instances_score_thresh" in record:
                    record["instances_score_thresh"] = values["score_thresh"]

    def compute_losses(
        self, images: ImageList, targets: Sequence[Mapping[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        features = self.backbone(images.tensor)
        losses = semantic_losses(self.sem_seg_head, features, images, targets)
        proposal_losses, head_losses = self.instance_losses(features, images, targets)
        w = self.instance_loss_weight
        return {**losses, **proposal_losses, **{k: v * w for k, v in head_losses.items()}}

    def detect(self, images: ImageList) -> list[dict[str, torch.Tensor]]:
        features = self.backbone(images.tensor)
        logits = semantic_logits(self.sem_seg_head, features, images)
        detections = self.detect_instances(features, images)
        return [{**d, "sem_seg": x} for d, x in zip(detections, logits)]

    def postprocess(
        self, detection: dict, input_size: tuple[int, int], output_size: tuple[int, int]
    ) -> dict:
        """Instances and semantic logits at ``output_size``, and their panoptic merge."""
        detection = dict(detection)
        logits = detection.pop("sem_seg")
        out = rescale_detections(detection, input_size, output_size)
        out["sem_seg"] = rescale_semantic(logits, output_size)
        out["panoptic_seg"], out["segments_info"] = self.merge(
            out["scores"], out["labels"], out["masks"], out["sem_seg"].argmax(dim=0)
        )
        return out

    def build_evaluators(self) -> list:
        """Box and mask AP, the semantic head's mIoU and PQ; class names from the evaluated
        dataset's ``class_names``, ``stuff_class_names`` and ``sem_seg_class_names`` when their
        counts fit the model. With :attr:`results_dir` set, the panoptic predictions are also
        written there in the COCO panoptic format (``predictions.json`` and
        ``predictions/<image>.png``, :class:`~detzoo.evaluation.PanopticResultsWriter`), next to
        the instance results."""
        evaluators = super().build_evaluators()
        sem_names = self._eval_dataset_attribute("sem_seg_class_names")
        if sem_names is not None and len(sem_names) != 1 + self.num_stuff_classes:
            sem_names = None
        evaluators.append(SemSegEvaluator(1 + self.num_stuff_classes, class_names=sem_names))
        things = self._eval_class_names() or [str(c) for c in range(self.num_classes)]
        stuff = self._eval_dataset_attribute("stuff_class_names")
        if stuff is None or len(stuff) != self.num_stuff_classes:
            stuff = [f"stuff{c}" for c in range(1, 1 + self.num_stuff_classes)]
        evaluators.append(PanopticFPNEvaluator(things, stuff))
        if self.results_dir is not None:
            evaluators.append(
                PanopticResultsWriter(
                    self.results_dir,
                    self._eval_category_ids("thing_dataset_id_to_contiguous_id"),
                    self._eval_category_ids("stuff_dataset_id_to_contiguous_id", first_label=1),
                )
            )
        return evaluators
