"""Drawing predictions: only detections above the score threshold are drawn, at their place."""

import torch

from detzoo.callbacks import draw_predictions
from detzoo.structures.densepose import part_palette


def test_draws_confident_boxes_and_masks_only():
    image = torch.zeros(3, 40, 60, dtype=torch.uint8)
    masks = torch.zeros(2, 40, 60, dtype=torch.bool)
    masks[0, 12:18, 12:18] = True
    masks[1, 30:35, 45:55] = True
    prediction = {
        "boxes": torch.tensor([[10.0, 10.0, 20.0, 20.0], [40.0, 25.0, 58.0, 38.0]]),
        "scores": torch.tensor([0.9, 0.2]),
        "labels": torch.tensor([1, 0]),
        "masks": masks,
    }
    drawn = draw_predictions(image, prediction, ["a", "b"], score_thresh=0.5)
    assert drawn.shape == image.shape and drawn.dtype == torch.uint8
    changed = drawn.sum(0) > 0
    assert changed[10, 10:21].all() and changed[10:21, 20].all()  # the confident box's outline
    assert changed[14, 14]  # its mask, blended in
    assert not changed[25:, 40:].any()  # nothing of the low-score detection
    assert not changed[:5, 30:].any()


def test_no_detection_leaves_the_image():
    image = torch.randint(0, 255, (3, 16, 16), dtype=torch.uint8)
    empty = {
        "boxes": torch.zeros(0, 4),
        "scores": torch.zeros(0),
        "labels": torch.zeros(0, dtype=torch.int64),
    }
    assert torch.equal(draw_predictions(image, empty), image)


def test_panoptic_stuff_and_densepose_charts_are_drawn():
    image = torch.zeros(3, 40, 60, dtype=torch.uint8)
    panoptic = torch.zeros(40, 60, dtype=torch.int32)
    panoptic[30:] = 2  # a stuff segment at the bottom; segment 1 is the instance
    panoptic[5:15, 5:15] = 1
    charts = {
        "coarse_segm": torch.tensor([-5.0, 5.0]).view(1, 2, 1, 1).expand(1, 2, 8, 8),
        "fine_segm": torch.zeros(1, 25, 8, 8),
        "u": torch.full((1, 25, 8, 8), 0.5),
        "v": torch.full((1, 25, 8, 8), 0.5),
    }
    charts["fine_segm"][:, 3] = 10.0  # every pixel on part 3
    prediction = {
        "boxes": torch.tensor([[5.0, 5.0, 15.0, 15.0]]),
        "scores": torch.tensor([0.9]),
        "labels": torch.tensor([0]),
        "panoptic_seg": panoptic,
        "segments_info": [
            {"id": 1, "isthing": True, "category_id": 0},
            {"id": 2, "isthing": False, "category_id": 1},
        ],
        "densepose": charts,
    }
    drawn = draw_predictions(image, prediction, ["person"])
    assert (drawn[:, 32:, 2:] > 0).all()  # the stuff segment, shaded
    assert not (drawn[:, 20:28, 30:] > 0).any()  # void stays as it was
    part_colour = part_palette()[3]
    assert torch.equal(drawn[:, 10, 10], (0.7 * part_colour.float()).round().to(torch.uint8))
