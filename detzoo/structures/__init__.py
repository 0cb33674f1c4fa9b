"""Box, mask, keypoint and image-batch helpers shared by data, heads and models."""

from .boxes import box_area, clip_boxes, matched_iou, nonempty, xywh_to_xyxy, xyxy_to_xywh
from .image_list import ImageList
from .keypoints import flip_indices, keypoint_flip_map
from .mask_crops import (
    crop_and_resize_bitmasks,
    crop_and_resize_polygons,
    rasterize_polygons_within_box,
)
from .masks import (
    bitmap_to_box,
    segmentation_to_bitmap,
    segmentation_to_rle,
    segmentations_to_bitmaps,
)

__all__ = [
    "ImageList",
    "bitmap_to_box",
    "box_area",
    "clip_boxes",
    "crop_and_resize_bitmasks",
    "crop_and_resize_polygons",
    "flip_indices",
    "keypoint_flip_map",
    "matched_iou",
    "nonempty",
    "rasterize_polygons_within_box",
    "segmentation_to_bitmap",
    "segmentation_to_rle",
    "segmentations_to_bitmaps",
    "xywh_to_xyxy",
    "xyxy_to_xywh",
]
