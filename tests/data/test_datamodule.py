import pytest
import torch

from detzoo.data import (
    CocoDataModule,
    CocoDetection,
    DetectionDataModule,
    build_test_transforms,
    build_train_transforms,
)

from .tiny_coco import write_dataset


@pytest.fixture
def tiny(tmp_path):
    path = write_dataset(tmp_path)
    train = CocoDetection(
        tmp_path / "images", path, transforms=build_train_transforms((32, 40), 80)
    )
    val = CocoDetection(tmp_path / "images", path, transforms=build_test_transforms(32, 80))
    return train, val


@pytest.mark.parametrize("num_workers", [0, 2])
def test_loaders_yield_the_batch_contract(tiny, num_workers):
    train, val = tiny
    module = DetectionDataModule(train, val, batch_size=2, num_workers=num_workers)
    batches = list(module.train_dataloader())
    ids = sorted(t["image_id"] for _, targets in batches for t in targets)
    assert ids == [1, 2, 3]  # empty and crowd-only images included (no skip asked)
    for images, targets in batches:
        assert isinstance(images, list) and isinstance(targets, list)
        assert {img.shape[2] >= img.shape[1] for img in images} in ({True}, {False})
        for image, target in zip(images, targets):
            assert image.dtype == torch.uint8 and min(image.shape[1:]) in (32, 40)
            assert target["masks"].shape[1:] == image.shape[1:]
    images, targets = next(iter(module.val_dataloader()))
    assert len(images) == 1 and min(images[0].shape[1:]) == 32


def test_training_augmentation_does_not_depend_on_workers_or_the_global_generator(tmp_path):
    write_dataset(tmp_path)
    # random horizontal flips and a random short side out of five
    train = CocoDetection(
        tmp_path / "images", tmp_path / "instances.json",
        transforms=build_train_transforms((24, 28, 32, 36, 40), 80),
    )  # fmt: skip

    def epoch(num_workers: int, global_seed: int) -> list:
        torch.manual_seed(global_seed)
        module = DetectionDataModule(train, batch_size=1, num_workers=num_workers, seed=3)
        loader = module.train_dataloader()
        loader.batch_sampler.set_epoch(1)
        return [(images[0], targets[0]["boxes"]) for images, targets in loader]

    reference = epoch(0, 0)
    for other in (epoch(0, 1), epoch(2, 7)):
        assert len(other) == len(reference)
        for (image, boxes), (image_ref, boxes_ref) in zip(other, reference):
            assert torch.equal(image, image_ref) and torch.equal(boxes, boxes_ref)
    sizes = {tuple(image.shape) for image, _ in reference}
    assert len(sizes) > 1 or len(reference) < 2  # the sizes are drawn, not fixed


def test_repeat_factor_and_missing_dataset(tiny):
    train, _ = tiny
    module = DetectionDataModule(
        train, batch_size=1, num_workers=0, repeat_factor_threshold=1.0, aspect_ratio_grouping=False
    )
    ids = [t["image_id"] for _, targets in module.train_dataloader() for t in targets]
    assert ids.count(1) >= 1 and len(ids) >= 3
    with pytest.raises(ValueError, match="no val dataset"):
        module.val_dataloader()


def test_coco_data_module_from_paths(tmp_path):
    write_dataset(tmp_path)
    module = CocoDataModule(
        tmp_path, "instances.json", "instances.json", train_images="images", val_images="images",
        train_min_size=(32,), test_min_size=32, num_workers=0, batch_size=2,
    )  # fmt: skip
    # training skips the empty and the crowd-only image, as Detectron2; validation keeps both
    with pytest.warns(UserWarning, match="skipped 2 of 3 images"):
        module.setup("fit")
    assert len(module.train_dataset) == 1 and len(module.val_dataset) == 3
    images, _ = next(iter(module.train_dataloader()))
    assert min(images[0].shape[1:]) == 32


def test_coco_data_module_can_train_on_images_without_objects(tmp_path):
    write_dataset(tmp_path)
    module = CocoDataModule(
        tmp_path, "instances.json", None, train_images="images", num_workers=0, batch_size=3,
        train_min_size=(32,), filter_empty_annotations=False,
    )  # fmt: skip
    module.setup("fit")
    counts = {t["image_id"]: len(t["boxes"]) for _, ts in module.train_dataloader() for t in ts}
    assert counts == {1: 2, 2: 0, 3: 1}  # objects per image: 2 (one crowd), none, a crowd one
