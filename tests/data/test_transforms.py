import numpy as np
import pytest
import torch

from detzoo.data import (
    ColorJitter,
    DetectionTransforms,
    FixedSizeCrop,
    RandomFlip,
    ResizeScale,
    ResizeShortestEdge,
    build_test_transforms,
    build_train_transforms,
    shortest_edge_size,
)
from detzoo.structures import bitmap_to_box

NAMES_FLIP = [0, 2, 1]  # keypoints: nose, left_eye, right_eye


def _sample(height=60, width=80, rects=((5, 10, 25, 30), (40, 20, 70, 55)), seed=0):
    """Rectangles (x0, y0, x1, y1) as masks with their tight boxes, keypoints at their corners,
    a sem_seg, and one DensePose annotation on the first object."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((len(rects), height, width), np.uint8)
    for mask, (x0, y0, x1, y1) in zip(masks, rects):
        mask[y0:y1, x0:x1] = 1
    boxes = np.array(rects, np.float32).reshape(-1, 4)
    keypoints = np.zeros((len(rects), 3, 3), np.float32)
    for k, (x0, y0, x1, y1) in enumerate(rects):
        keypoints[k] = [[(x0 + x1) / 2, (y0 + y1) / 2, 2], [x0 + 1, y0 + 1, 2], [x1 - 1, y0 + 1, 1]]
    segm = np.zeros((4, 4), np.uint8)
    segm[:, :2] = 3  # coarse part 3 (left hand) on the frame's left half
    densepose = [
        {
            "x": np.array([6.0, 20.0], np.float32),
            "y": np.array([12.0, 25.0], np.float32),
            "I": np.array([3, 1]),
            "U": np.array([0.1, 0.2], np.float32),
            "V": np.array([0.3, 0.4], np.float32),
            "segm": segm,
            "segm_box": boxes[0].copy(),
        }
    ] + [None] * (len(rects) - 1)
    return {
        "image": rng.integers(0, 256, (height, width, 3), dtype=np.uint8),
        "boxes": boxes,
        "labels": np.arange(len(rects), dtype=np.int64),
        "iscrowd": np.zeros(len(rects), np.int64),
        "area": masks.sum((1, 2)).astype(np.float32),
        "masks": masks,
        "keypoints": keypoints,
        "keypoint_flip_indices": NAMES_FLIP,
        "sem_seg": (rng.integers(0, 5, (height, width))).astype(np.uint8),
        "densepose": densepose,
    }


@pytest.mark.parametrize(
    ("size", "short", "max_size", "expected"),
    [
        ((480, 640), 800, 1333, (800, 1067)),  # 640 * 800 / 480 = 1066.67
        ((427, 640), 800, 1333, (800, 1199)),  # 1199.06 -> int(1199.56)
        ((640, 427), 800, 1333, (1199, 800)),
        ((500, 2000), 800, 1333, (333, 1333)),  # capped: 800 * 1333 / 3200 = 333.25
        ((100, 100), 800, 1333, (800, 800)),
    ],
)
def test_shortest_edge_size_is_detectron2s_formula(size, short, max_size, expected):
    assert shortest_edge_size(*size, short, max_size) == expected


def test_test_transform_resizes_everything_consistently():
    sample = _sample()  # 60 x 80
    out = build_test_transforms(800, 1333, map_targets=True)(_sample())
    assert out["image"].shape == (800, 1067, 3)
    assert out["masks"].shape == (2, 800, 1067) and out["sem_seg"].shape == (800, 1067)
    scale = np.array([1067 / 80, 800 / 60] * 2, np.float32)
    np.testing.assert_allclose(out["boxes"], sample["boxes"] * scale, rtol=1e-5)
    np.testing.assert_allclose(out["area"], sample["area"] * (1067 / 80) * (800 / 60), rtol=1e-5)
    np.testing.assert_allclose(
        out["keypoints"][..., :2], sample["keypoints"][..., :2] * scale[:2], rtol=1e-5
    )


def test_evaluation_transform_resizes_the_image_only():
    sample = _sample()  # 60 x 80
    out = build_test_transforms(800, 1333)(_sample())
    assert out["image"].shape == (800, 1067, 3)
    for key in ("masks", "sem_seg", "boxes", "keypoints", "labels", "area"):
        np.testing.assert_array_equal(out[key], sample[key], err_msg=key)


def test_flip_twice_is_identity():
    sample = _sample()
    out = DetectionTransforms([RandomFlip(1.0), RandomFlip(1.0)])(_sample())
    for key in ("image", "masks", "sem_seg", "boxes", "keypoints", "labels", "area"):
        np.testing.assert_array_equal(out[key], sample[key], err_msg=key)
    for key, value in sample["densepose"][0].items():
        np.testing.assert_allclose(out["densepose"][0][key], value, err_msg=key)


def test_flip_mirrors_and_swaps_left_right():
    sample = _sample()
    out = DetectionTransforms([RandomFlip(1.0)])(_sample())
    np.testing.assert_array_equal(out["image"], sample["image"][:, ::-1])
    np.testing.assert_array_equal(out["boxes"][0], [80 - 25, 10, 80 - 5, 30])
    # keypoint 1 (left_eye) is the old right_eye, mirrored; the nose stays the nose.
    expected_left = [80 - sample["keypoints"][0, 2, 0], sample["keypoints"][0, 2, 1], 1]
    np.testing.assert_allclose(out["keypoints"][0, 1], expected_left)
    np.testing.assert_allclose(out["keypoints"][0, 0, 0], 80 - sample["keypoints"][0, 0, 0])
    densepose = out["densepose"][0]
    np.testing.assert_allclose(densepose["x"], 80 - sample["densepose"][0]["x"])
    assert densepose["I"].tolist() == [4, 1]  # left hand <-> right hand; torso stays
    assert (densepose["segm"][:, 2:] == 2).all() and (densepose["segm"][:, :2] == 0).all()
    np.testing.assert_allclose(densepose["segm_box"], out["boxes"][0])


@pytest.mark.parametrize(
    "transforms",
    [
        build_train_transforms((40, 72, 100), 120),
        build_train_transforms((30, 90), 200, sample_style="range", color_jitter=0.3),
        build_train_transforms(lsj_size=64),
        build_test_transforms(50, 90, map_targets=True),
    ],
    ids=["multiscale", "range-jitter", "lsj", "test"],
)
def test_boxes_stay_tight_boxes_of_masks(transforms):
    for seed in range(8):
        torch.manual_seed(seed)
        out = transforms(_sample(seed=seed))
        assert len(out["boxes"]) == len(out["masks"]) == len(out["labels"]) == len(out["keypoints"])
        assert len(out["densepose"]) == len(out["boxes"])
        assert out["masks"].shape[1:] == out["image"].shape[:2] == out["sem_seg"].shape
        for box, mask in zip(out["boxes"], out["masks"]):
            np.testing.assert_allclose(box, bitmap_to_box(mask), atol=1.0)


def _coordinate_image(height, width):
    """R = x, G = y: the output pixels tell where a crop came from."""
    ys, xs = np.mgrid[:height, :width]
    return np.stack([xs, ys, np.zeros_like(xs)], -1).astype(np.uint8)


def test_fixed_size_crop_drops_cut_away_objects():
    rects = ((2, 2, 20, 20), (70, 70, 98, 98), (30, 40, 60, 50))
    for seed in range(10):
        torch.manual_seed(seed)
        sample = _sample(100, 100, rects)
        sample["image"] = _coordinate_image(100, 100)
        out = DetectionTransforms([FixedSizeCrop((50, 50))])(sample)
        x0, y0 = (int(v) for v in out["image"][0, 0, :2])
        window = np.array([x0, y0, x0 + 50, y0 + 50], np.float32)
        expected = []
        for label, (a, b, c, d) in enumerate(rects):
            clipped = np.array([max(a, x0), max(b, y0), min(c, x0 + 50), min(d, y0 + 50)])
            if clipped[2] > clipped[0] and clipped[3] > clipped[1]:
                expected.append((label, clipped - window[[0, 1, 0, 1]]))
        assert out["labels"].tolist() == [label for label, _ in expected]
        for box, (_, clipped) in zip(out["boxes"], expected):
            np.testing.assert_allclose(box, clipped)
        inside = out["keypoints"][..., 2] > 0
        assert (out["keypoints"][inside][:, :2] <= 50).all()
        assert (out["keypoints"][~inside] == 0).all()


def test_crop_pads_small_images():
    out = DetectionTransforms([FixedSizeCrop((64, 96))])(_sample(60, 80))
    assert out["image"].shape == (64, 96, 3)
    assert (out["image"][60:] == 128).all() and (out["image"][:, 80:] == 128).all()
    assert (out["sem_seg"][60:] == 255).all() and (out["sem_seg"][:, 80:] == 255).all()
    assert (out["masks"][:, 60:] == 0).all()
    np.testing.assert_array_equal(out["boxes"], _sample(60, 80)["boxes"])  # no shift


def test_resize_scale_fits_the_scaled_target():
    torch.manual_seed(0)
    scale = 0.5 + float(torch.rand(())) * 1.0
    torch.manual_seed(0)
    out = DetectionTransforms([ResizeScale(0.5, 1.5, 100, 100)])(_sample(60, 80))
    ratio = min(100 * scale / 60, 100 * scale / 80)
    assert out["image"].shape[:2] == (round(60 * ratio), round(80 * ratio))


def test_color_jitter_changes_pixels_only():
    torch.manual_seed(0)
    sample = _sample()
    out = DetectionTransforms([ColorJitter(0.5, 0.5, 0.5)])(_sample())
    assert not np.array_equal(out["image"], sample["image"])
    np.testing.assert_array_equal(out["boxes"], sample["boxes"])
    np.testing.assert_array_equal(out["masks"], sample["masks"])


def test_resize_choice_and_bad_style():
    torch.manual_seed(0)
    sizes = {
        DetectionTransforms([ResizeShortestEdge((30, 45), 1000)])(_sample())["image"].shape[0]
        for _ in range(20)
    }
    assert sizes == {30, 45}
    with pytest.raises(ValueError, match="sample_style"):
        ResizeShortestEdge(30, sample_style="bogus")


def test_flipping_keypoints_needs_flip_indices():
    sample = _sample()
    del sample["keypoint_flip_indices"]
    with pytest.raises(ValueError, match="keypoint_flip_indices"):
        DetectionTransforms([RandomFlip(1.0)])(sample)
