import pytest
import torch

from detzoo.data import CocoKeypoints, build_train_transforms

from .tiny_coco import base_dataset, write_dataset

NAMES = ["nose", "left_eye", "right_eye"]


def _keypoint_dataset():
    content = base_dataset()
    content["categories"][0]["keypoints"] = NAMES
    content["annotations"][0]["keypoints"] = [20, 12, 2, 14, 11, 1, 0, 0, 0]
    return content


def test_keypoints_get_detectron2s_half_pixel_and_flip_map(tmp_path):
    dataset = CocoKeypoints(tmp_path / "images", write_dataset(tmp_path, _keypoint_dataset()))
    assert dataset.keypoint_names == NAMES
    assert dataset.keypoint_flip_map == [("left_eye", "right_eye")]
    target = dataset[0][1]
    keypoints = target["keypoints"]
    assert keypoints.dtype == torch.float32 and keypoints.shape == (2, 3, 3)
    torch.testing.assert_close(
        keypoints[0], torch.tensor([[20.5, 12.5, 2], [14.5, 11.5, 1], [0, 0, 0]])
    )
    assert (keypoints[1] == 0).all()  # annotation without keypoints: all unlabeled
    assert dataset[1][1]["keypoints"].shape == (0, 3, 3)


def test_flip_swaps_named_keypoints(tmp_path):
    path = write_dataset(tmp_path, _keypoint_dataset())
    transforms = build_train_transforms(40, 1000, flip_prob=1.0)
    dataset = CocoKeypoints(tmp_path / "images", path, transforms=transforms, keypoint_offset=0.0)
    keypoints = dataset[0][1]["keypoints"][0]
    torch.testing.assert_close(keypoints[2], torch.tensor([60 - 14.0, 11, 1]))  # right <- left
    assert (keypoints[1] == 0).all()


def test_wrong_keypoint_count_names_the_annotation(tmp_path):
    content = _keypoint_dataset()
    content["annotations"][0]["keypoints"] = [1, 2, 2]
    with pytest.raises(ValueError, match=r"annotation id 10 has 3 keypoint values; expected 3 x 3"):
        CocoKeypoints(tmp_path / "images", write_dataset(tmp_path, content))


def test_file_without_keypoint_names_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="no category lists 'keypoints'"):
        CocoKeypoints(tmp_path / "images", write_dataset(tmp_path))


def test_training_images_with_too_few_labelled_keypoints_are_skipped(tmp_path):
    path = write_dataset(tmp_path, _keypoint_dataset())
    assert len(CocoKeypoints(tmp_path / "images", path)) == 3
    with pytest.warns(UserWarning, match="skipped 2 of 3 images with fewer than 1 labelled"):
        kept = CocoKeypoints(tmp_path / "images", path, min_keypoints_per_image=1)
    assert [r["image_id"] for r in kept.records] == [1]  # 2 labelled keypoints
    with pytest.warns(UserWarning, match="skipped 3 of 3"):
        CocoKeypoints(tmp_path / "images", path, min_keypoints_per_image=3)


def test_oks_sigmas_are_kept_and_checked(tmp_path):
    path = write_dataset(tmp_path, _keypoint_dataset())
    assert CocoKeypoints(tmp_path / "images", path).keypoint_oks_sigmas is None
    dataset = CocoKeypoints(tmp_path / "images", path, keypoint_oks_sigmas=(0.1, 0.2, 0.3))
    assert dataset.keypoint_oks_sigmas == [0.1, 0.2, 0.3]
    with pytest.raises(ValueError, match="2 keypoint_oks_sigmas for 3 keypoints"):
        CocoKeypoints(tmp_path / "images", path, keypoint_oks_sigmas=(0.1, 0.2))
