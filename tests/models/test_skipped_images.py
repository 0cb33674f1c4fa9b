"""``skip_corrupt_images=True``: fit and validate go on without the corrupt images, and the model
counts and names them at the end of each epoch."""

import json

import pytest

from .test_ddp import quiet_trainer, tiny_faster_rcnn, tiny_shapes_datamodule, write_tiny_shapes


def _cut_first_image(root, split: str) -> str:
    """Cut the first image file of ``split`` to half its bytes; returns its path."""
    entry = json.loads((root / split / "instances.json").read_text())["images"][0]
    path = root / split / "images" / entry["file_name"]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return str(path)


def test_fit_skips_corrupt_images_and_reports_them(tmp_path):
    root = write_tiny_shapes(tmp_path / "shapes")
    cut_train, cut_val = _cut_first_image(root, "train"), _cut_first_image(root, "val")
    datamodule = tiny_shapes_datamodule(root, skip_corrupt_images=True, aspect_ratio_grouping=False)
    trainer = quiet_trainer(max_epochs=1, limit_val_batches=None)
    with pytest.warns(UserWarning, match="skipped 1 image") as warned:
        trainer.fit(tiny_faster_rcnn(score_thresh=0.0), datamodule=datamodule)
    messages = "\n".join(str(w.message) for w in warned)
    assert cut_train in messages and cut_val in messages
    assert trainer.callback_metrics["train/skipped_images"] == 1
    assert trainer.callback_metrics["val/skipped_images"] == 1
    assert trainer.global_step == 4  # 7 good training images in batches of 2


def test_fit_stops_on_a_corrupt_image_by_default(tmp_path):
    root = write_tiny_shapes(tmp_path / "shapes")
    cut_train = _cut_first_image(root, "train")
    trainer = quiet_trainer(max_epochs=1, limit_val_batches=0)
    with pytest.raises(OSError, match=cut_train):
        trainer.fit(tiny_faster_rcnn(), datamodule=tiny_shapes_datamodule(root))
