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


def _regenerated(root, split: str, index: int):
    """The scene and json records of image ``index`` recomputed in memory, as the writer made them."""
    from detzoo.data.synthetic.annotations import scene_records
    from detzoo.data.synthetic.scene import compose_scene
    from detzoo.data.synthetic.writer import _image_rng

    rng = _image_rng(0, split, index)
    height, width = (int(v) for v in rng.integers(320, 640 + 1, 2))
    scene = compose_scene(rng, height, width)
    return scene, scene_records(rng, scene, index)


def test_round_trip_gives_exactly_the_generated_annotations(shapes_root):
    from detzoo.data.synthetic.annotations import IDS_PER_IMAGE

    split = shapes_root / "val"
    instances = build_dataset("instances", split / "images", split / "instances.json")
    keypoints = build_dataset("keypoints", split / "images", split / "person_keypoints.json")
    densepose = build_dataset("densepose", split / "images", split / "densepose.json")
    panoptic = build_dataset(
        "panoptic", split / "images", split / "panoptic.json", panoptic_root=split / "panoptic"
    )
    for index in range(len(instances)):
        scene, records = _regenerated(shapes_root, "val", index)
        record = instances.records[index]
        _, target = instances[index]
        # masks (after polygon / RLE decoding) are exactly the visible pixels of each object
        for k, annotation in enumerate(record["annotations"]):
            owner_index = annotation["id"] - record["image_id"] * IDS_PER_IMAGE
            expected = scene.owner == owner_index
            np.testing.assert_array_equal(target["masks"][k].numpy().astype(bool), expected)
            generated = next(a for a in records["instances"] if a["id"] == annotation["id"])
            x, y, w, h = generated["bbox"]
            np.testing.assert_allclose(target["boxes"][k].numpy(), [x, y, x + w, y + h], atol=1e-4)
            assert instances.class_names[int(target["labels"][k])] == next(
                c["name"] for c in instances.categories if c["id"] == generated["category_id"]
            )
        assert len(record["annotations"]) == len(records["instances"])
        # keypoints: the figures' own joints (files hold COCO pixel indices, read back + 0.5)
        _, kp_target = keypoints[index]
        figures = [o.figure for o in scene.objects if o.figure is not None and not o.iscrowd]
        assert len(kp_target["keypoints"]) == len(records["keypoints"]) == len(figures)
        for read, figure in zip(kp_target["keypoints"].numpy(), figures):
            labeled = read[:, 2] > 0
            np.testing.assert_allclose(
                read[labeled, :2], np.asarray(figure.keypoints)[labeled], atol=0.006
            )
        # DensePose points: the file's 256-frame coordinates mapped into the box, I/U/V as made
        _, dp_target = densepose[index]
        for read, made in zip(dp_target["densepose"], records["densepose"]):
            x, y, w, h = made["bbox"]
            np.testing.assert_allclose(read["x"], np.array(made["dp_x"]) / 256 * w + x, atol=1e-3)
            np.testing.assert_allclose(read["y"], np.array(made["dp_y"]) / 256 * h + y, atol=1e-3)
            assert read["I"].tolist() == list(made["dp_I"])
            np.testing.assert_allclose(read["U"], made["dp_U"], atol=1e-6)
            np.testing.assert_allclose(read["V"], made["dp_V"], atol=1e-6)
        # panoptic: things are the objects' visible pixels, every other pixel its stuff or void
        _, pan_target = panoptic[index]
        things = scene.owner > 0
        segments = {s["id"]: s for s in records["panoptic"]["segments_info"]}
        thing_ids = {s["id"] for s in segments.values() if not s.get("iscrowd")}
        assert (pan_target["sem_seg"].numpy()[things] == 0).all()
        expected_instances = sum(
            1 for a in records["instances"] if a["id"] in thing_ids or a["iscrowd"]
        )
        assert len(pan_target["boxes"]) == expected_instances
        stuff = pan_target["sem_seg"].numpy()[~things]
        assert set(np.unique(stuff).tolist()) <= {1, 2, 3, 255}
