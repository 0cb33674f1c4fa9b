"""Semantic segmentation metrics from a confusion matrix (mIoU, fwIoU, mACC, pACC), as Detectron2.

Written here rather than with torchmetrics' ``MeanIoU``/``JaccardIndex`` because Detectron2's
definitions differ: classes absent from the ground truth drop out of every mean, fwIoU weights
by ground-truth frequency, and per-class values are reported by name.
"""

import math
from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric


class SemSegEvaluator(Metric):
    """Detectron2's SemSegEvaluator metrics over a ``[C+1, C+1]`` confusion matrix.

    ``compute()`` returns ``sem_seg/mIoU``, ``sem_seg/fwIoU``, ``sem_seg/mACC``, ``sem_seg/pACC``
    and per class ``sem_seg/IoU-<name>`` and ``sem_seg/ACC-<name>``, as fractions in ``[0, 1]``
    (Detectron2 reports ×100). As in Detectron2, a class with no ground-truth pixel is left out
    of every mean and reported as ``nan`` (pixels wrongly predicted as it still lower the IoU of
    their true class); pixels labelled ``ignore_index`` are not counted.

    Args:
        num_classes: ``C``, the number of classes.
        ignore_index: ground-truth label of pixels to ignore.
        class_names: names for the per-class keys (default: ``"0"``, ``"1"``, ...).

    Inputs to :meth:`update`, one dict per image:
        preds: ``sem_seg``, either float logits ``[C, H, W]`` (argmax taken) or int labels ``[H, W]``.
        targets: ``sem_seg`` int64 ``[H, W]`` in ``[0, C)`` or ``ignore_index``.

    Distributed: the confusion matrix is summed over ranks (torchmetrics ``dist_reduce_fx="sum"``).
    """

    full_state_update = False
    conf_matrix: Tensor

    def __init__(
        self, num_classes: int, ignore_index: int = 255, class_names: Sequence[str] | None = None
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"got {len(class_names)} class_names for {num_classes} classes")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = (
            list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]
        )
        # rows: prediction, columns: ground truth; the last column holds ignored pixels
        size = num_classes + 1
        self.add_state(
            "conf_matrix", torch.zeros(size, size, dtype=torch.int64), dist_reduce_fx="sum"
        )

    def update(self, preds: list[dict[str, Tensor]], targets: list[dict[str, Tensor]]) -> None:
        """Add a batch of images; see the class docstring for the dict contents."""
        if len(preds) != len(targets):
            raise ValueError(f"got {len(preds)} predictions for {len(targets)} targets")
        c = self.num_classes
        for i, (pred, target) in enumerate(zip(preds, targets)):
            labels = pred["sem_seg"]
            if labels.dim() == 3:
                if labels.shape[0] != c:
                    raise ValueError(
                        f"image {i}: sem_seg logits have {labels.shape[0]} channels, expected {c}"
                    )
                labels = labels.argmax(dim=0)
            gt = target["sem_seg"].to(self.conf_matrix.device, torch.int64)
            labels = labels.to(gt.device, torch.int64)
            if labels.shape != gt.shape:
                raise ValueError(
                    f"image {i}: prediction {tuple(labels.shape)} and target {tuple(gt.shape)} differ in size"
                )
            if labels.min() < 0 or labels.max() >= c:
                raise ValueError(f"image {i}: predicted labels must be in [0, {c})")
            ignored = gt == self.ignore_index
            if ((gt < 0) | (gt >= c))[~ignored].any():
                raise ValueError(
                    f"image {i}: target labels must be in [0, {c}) or {self.ignore_index}"
                )
            gt = torch.where(ignored, c, gt)
            self.conf_matrix += torch.bincount(
                ((c + 1) * labels + gt).reshape(-1), minlength=(c + 1) ** 2
            ).reshape(c + 1, c + 1)

    def compute(self) -> dict[str, float]:
        """Metrics over every pixel seen on every rank (see class docstring for keys)."""
        conf = self.conf_matrix[:-1, :-1].double()
        tp = conf.diagonal()
        pos_gt = conf.sum(dim=0)
        pos_pred = conf.sum(dim=1)
        valid = pos_gt > 0
        nan = torch.full_like(tp, math.nan)
        acc = torch.where(valid, tp / pos_gt, nan)
        iou = torch.where(valid, tp / (pos_gt + pos_pred - tp), nan)
        total = pos_gt.sum()
        if total == 0:
            raise RuntimeError("SemSegEvaluator.compute(): no labelled ground-truth pixel was seen")
        results = {
            "sem_seg/mIoU": iou[valid].mean().item(),
            "sem_seg/fwIoU": (iou[valid] * pos_gt[valid] / total).sum().item(),
            "sem_seg/mACC": acc[valid].mean().item(),
            "sem_seg/pACC": (tp.sum() / total).item(),
        }
        results.update(
            {f"sem_seg/IoU-{name}": iou[k].item() for k, name in enumerate(self.class_names)}
        )
        results.update(
            {f"sem_seg/ACC-{name}": acc[k].item() for k, name in enumerate(self.class_names)}
        )
        return results
