"""detzoo's ROI, NMS and mask-pasting ops.

Every op runs through the compiled kernels ``torch.ops.detzoo.*`` when ``detzoo._C`` is built (see
:mod:`detzoo.ops._ext`) and through torchvision / plain-PyTorch versions otherwise. Where
``torchvision.ops`` has the same op, detzoo's takes the same arguments.
"""

from detzoo.ops._ext import HAS_EXT
from detzoo.ops.nms import batched_nms, nms
from detzoo.ops.paste_masks import paste_masks_in_image
from detzoo.ops.roi_pooling import ROIAlign, roi_align
from detzoo.ops.rotated_boxes import batched_nms_rotated, nms_rotated, pairwise_iou_rotated
from detzoo.ops.rotated_roi_pooling import ROIAlignRotated, roi_align_rotated

__all__ = [
    "HAS_EXT",
    "ROIAlign",
    "ROIAlignRotated",
    "batched_nms",
    "batched_nms_rotated",
    "nms",
    "nms_rotated",
    "pairwise_iou_rotated",
    "paste_masks_in_image",
    "roi_align",
    "roi_align_rotated",
]
