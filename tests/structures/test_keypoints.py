import pytest

from detzoo.structures import flip_indices, keypoint_flip_map

COCO_NAMES = [
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
]  # fmt: skip


def test_coco_flip_map_matches_detectron2():
    pairs = keypoint_flip_map(COCO_NAMES)
    assert pairs[0] == ("left_eye", "right_eye")
    assert len(pairs) == 8 and all(a.startswith("left_") for a, _ in pairs)
    indices = flip_indices(COCO_NAMES, pairs)
    assert indices[:5] == [0, 2, 1, 4, 3]
    assert [indices[i] for i in indices] == list(range(17))  # an involution


def test_unpaired_names_stay_and_bad_maps_fail():
    assert keypoint_flip_map(["nose", "left_eye", "tail"]) == []
    assert flip_indices(["nose", "tail"], []) == [0, 1]
    with pytest.raises(ValueError, match="not keypoint names"):
        flip_indices(["a", "b"], [("a", "c")])
    with pytest.raises(ValueError, match="unique"):
        flip_indices(["a", "a"], [])
