"""Corrupt image files stop loading by default and are skipped, and listed, when asked."""

import pytest

from detzoo.data import (
    CocoDetection,
    CorruptImageError,
    DetectionBatch,
    DetectionDataModule,
    SkippedImage,
    build_test_transforms,
    collate_detection,
)

from .tiny_coco import write_dataset


@pytest.fixture
def dataset_with_a_cut_image(tmp_path):
    """The tiny dataset (images 1, 2, 3) with image 2's PNG cut in half."""
    path = write_dataset(tmp_path)
    cut = tmp_path / "images" / "b.png"
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    return CocoDetection(tmp_path / "images", path, transforms=build_test_transforms(32, 80)), cut


def test_a_corrupt_image_stops_loading_by_default(dataset_with_a_cut_image):
    dataset, cut = dataset_with_a_cut_image
    module = DetectionDataModule(dataset, dataset, batch_size=3, num_workers=0)
    with pytest.raises(CorruptImageError, match=rf"{cut} \(image id 2\) is truncated"):
        list(module.train_dataloader())
    with pytest.raises(CorruptImageError, match="image id 2"):
        list(module.val_dataloader())


@pytest.mark.parametrize("num_workers", [0, 2])
def test_skipping_leaves_the_image_out_and_names_it(dataset_with_a_cut_image, num_workers):
    dataset, cut = dataset_with_a_cut_image
    module = DetectionDataModule(
        dataset, dataset, batch_size=3, num_workers=num_workers, skip_corrupt_images=True
    )
    for loader in (module.train_dataloader(), module.val_dataloader()):
        batches = list(loader)
        ids = sorted(int(t["image_id"]) for batch in batches for t in batch.targets)
        assert ids == [1, 3]
        skipped = [item for batch in batches for item in batch.skipped]
        assert len(skipped) == 1
        assert skipped[0].file_name == str(cut) and skipped[0].image_id == 2
        assert "truncated" in skipped[0].reason
        for batch in batches:
            assert len(batch.images) == len(batch.targets)


def test_batch_is_the_images_targets_pair():
    skipped = SkippedImage("x.jpg", 4, "is truncated")
    batch = collate_detection([skipped])
    assert isinstance(batch, DetectionBatch)
    images, targets = batch
    assert images == [] and targets == [] and batch.skipped == [skipped]
    assert len(batch) == 2 and batch[1] is batch.targets
