"""The readers and ShapesDataModule on a tiny generated ``shapes`` dataset."""

import numpy as np
import pytest
import torch

from detzoo.data import ShapesDataModule, build_dataset
from detzoo.data.synthetic import KEYPOINT_NAMES, write_shapes_dataset
from detzoo.structures import bitmap_to_box


@pytest.fixture(scope="module")
def shapes_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    return write_shapes_dataset(root, num_train=4, num_val=2, workers=1, progress=False)


def test_instances_masks_match_boxes_and_areas(shapes_root):
    split = shapes_root / "train"
    dataset = build_dataset("instances", split / "images", split / "instances.json")
    assert dataset.class_names[0] == "circle" and dataset.num_classes == 7
    for index in range(len(dataset)):
        _, target = dataset[index]
        for box, mask, area in zip(target["boxes"], target["masks"].numpy(), target["area"]):
            np.testing.assert_allclose(box.numpy(), bitmap_to_box(mask), atol=1.0)
            assert abs(float(area) - mask.sum()) <= 0.05 * mask.sum() + 4


def test_every_task_reads(shapes_root):
    split = shapes_root / "val"
    keypoints = build_dataset("keypoints", split / "images", split / "person_keypoints.json")
    assert keypoints.keypoint_names == list(KEYPOINT_NAMES)
    assert ("left_shoulder", "right_shoulder") in keypoints.keypoint_flip_map
    densepose = build_dataset("densepose", split / "images", split / "densepose.json")
    panoptic = build_dataset(
        "panoptic", split / "images", split / "panoptic.json", panoptic_root=split / "panoptic"
    )
    assert panoptic.sem_seg_class_names == ["things", "sky", "ground", "water"]
    for index in range(len(panoptic)):
        sem_seg = panoptic[index][1]["sem_seg"]
        assert set(sem_seg.unique().tolist()) <= {0, 1, 2, 3, 255}
        dense_target = densepose[index][1]
        for annotation, box in zip(dense_target["densepose"], dense_target["boxes"]):
            if annotation is not None:
                assert (annotation["x"] >= box[0] - 1).all() and (
                    annotation["x"] <= box[2] + 1
                ).all()
        assert keypoints[index][1]["keypoints"].shape[1:] == (len(KEYPOINT_NAMES), 3)


def test_shapes_data_module_prepares_and_loads(tmp_path):
    module = ShapesDataModule(root=tmp_path / "shapes", num_train=3, num_val=2, num_workers=0)
    module.prepare_data()
    assert (tmp_path / "shapes" / "train" / "instances.json").is_file()
    module.setup("fit")
    images, targets = next(iter(module.train_dataloader()))
    assert len(images) == len(targets) >= 1
    assert all(image.dtype == torch.uint8 and image.shape[0] == 3 for image in images)
    assert len(module.val_dataset) == 2
