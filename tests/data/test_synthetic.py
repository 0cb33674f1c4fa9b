"""The procedural shapes dataset: valid COCO-family files whose masks, boxes, panoptic ids,
keypoints and DensePose points agree with each other, deterministically."""

import json
from pathlib import Path

import cv2
import numpy as np
import pycocotools.mask as mask_util
import pytest
from pycocotools.coco import COCO

import detzoo.data.synthetic.scene as scene_module
from detzoo.data.synthetic import KEYPOINT_NAMES, write_shapes_dataset
from detzoo.data.synthetic.categories import FINE_PART_OF_COARSE

NUM_TRAIN, NUM_VAL, MIN_SIZE, MAX_SIZE = 30, 4, 128, 192
FIGURE = 13


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shapes")
    return write_shapes_dataset(
        out, NUM_TRAIN, NUM_VAL, seed=3, min_size=MIN_SIZE, max_size=MAX_SIZE, progress=False
    )


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


def _panoptic_ids(dataset: Path, file_name: str) -> np.ndarray:
    rgb = cv2.imread(str(dataset / "train" / "panoptic" / file_name))[..., ::-1].astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256**2 * rgb[..., 2]


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_layout_and_manifest(dataset):
    manifest = _load(dataset / "shapes.json")
    assert manifest["seed"] == 3
    assert (manifest["num_train"], manifest["num_val"]) == (NUM_TRAIN, NUM_VAL)
    for split, count in (("train", NUM_TRAIN), ("val", NUM_VAL)):
        assert len(list((dataset / split / "images").glob("*.jpg"))) == count
        assert len(list((dataset / split / "panoptic").glob("*.png"))) == count
        for name in ("instances", "person_keypoints", "panoptic", "densepose"):
            assert len(_load(dataset / split / f"{name}.json")["images"]) == count
    image = cv2.imread(str(dataset / "train" / "images" / "000000.jpg"))
    entry = _load(dataset / "train" / "instances.json")["images"][0]
    assert entry["file_name"] == "000000.jpg" and entry["id"] == 1
    assert image.shape == (entry["height"], entry["width"], 3)


def test_instances_masks_areas_and_boxes(dataset):
    coco = COCO(str(dataset / "train" / "instances.json"))
    assert sorted(coco.getCatIds()) == [1, 3, 5, 7, 9, 11, 13]
    anns = coco.loadAnns(coco.getAnnIds())
    assert len({a["id"] for a in anns}) == len(anns) > 50
    kinds = {"polygon": 0, "rle": 0}
    for ann in anns:
        mask = coco.annToMask(ann)
        assert mask.sum() == ann["area"] > 0
        ys, xs = np.nonzero(mask)
        tight = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        np.testing.assert_allclose(ann["bbox"], tight, atol=1)
        if isinstance(ann["segmentation"], list):
            kinds["polygon"] += 1
            assert all(len(p) >= 6 and len(p) % 2 == 0 for p in ann["segmentation"])
            _, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
            assert (hierarchy[0, :, 3] == -1).all(), "a mask with a hole cannot be a polygon"
        else:
            kinds["rle"] += 1
    assert kinds["polygon"] > kinds["rle"] > 0


def test_panoptic_ids_match_segments_and_instances(dataset):
    panoptic = _load(dataset / "train" / "panoptic.json")
    things = {a["id"]: a for a in _load(dataset / "train" / "instances.json")["annotations"]}
    isthing = {c["id"]: c["isthing"] for c in panoptic["categories"]}
    assert {k for k, v in isthing.items() if not v} == {21, 23, 25}
    coco = COCO(str(dataset / "train" / "instances.json"))
    void_pixels = 0
    for ann in panoptic["annotations"]:
        ids = _panoptic_ids(dataset, ann["file_name"])
        segments = {s["id"]: s for s in ann["segments_info"]}
        assert set(np.unique(ids)) - {0} == set(segments)
        void_pixels += int((ids == 0).sum())
        for segment_id, segment in segments.items():
            region = ids == segment_id
            assert region.sum() == segment["area"]
            if isthing[segment["category_id"]]:
                instance = things[segment_id]
                assert instance["area"] == segment["area"]
                assert instance["bbox"] == segment["bbox"]
                np.testing.assert_array_equal(coco.annToMask(instance), region)
    assert void_pixels > 0


def test_keypoints_lie_on_visible_figures(dataset):
    coco = COCO(str(dataset / "train" / "person_keypoints.json"))
    (category,) = coco.loadCats(coco.getCatIds())
    assert category["id"] == FIGURE and category["keypoints"] == list(KEYPOINT_NAMES)
    names = category["keypoints"]
    for name in names:
        if name.startswith("left_"):
            assert "right_" + name[5:] in names
    assert all(1 <= i <= len(names) for pair in category["skeleton"] for i in pair)
    instance_ids = {
        a["id"]
        for a in _load(dataset / "train" / "instances.json")["annotations"]
        if a["category_id"] == FIGURE
    }
    anns = coco.loadAnns(coco.getAnnIds())
    assert {a["id"] for a in anns} == instance_ids and len(anns) > 5
    visibilities = []
    for ann in anns:
        mask = coco.annToMask(ann)
        points = np.asarray(ann["keypoints"]).reshape(-1, 3)
        assert ann["num_keypoints"] == int((points[:, 2] > 0).sum())
        for x, y, v in points:
            visibilities.append(v)
            if v == 0:
                assert x == y == 0
            # COCO keypoints are pixel indices: the point lies in pixel (int(y + .5), int(x + .5))
            elif v == 2:
                assert mask[int(y + 0.5), int(x + 0.5)]
            else:
                assert not mask[int(y + 0.5), int(x + 0.5)]
    assert {1, 2} <= set(visibilities)


def test_densepose_points_on_figure_with_uv_in_unit_range(dataset):
    densepose = _load(dataset / "train" / "densepose.json")
    coco = COCO(str(dataset / "train" / "densepose.json"))
    assert len(densepose["annotations"]) > 5
    fine_to_coarse = {fine: coarse for coarse, fine in FINE_PART_OF_COARSE.items()}
    parts_seen = set()
    for ann in densepose["annotations"]:
        count = len(ann["dp_x"])
        assert 0 < count <= 100
        assert all(len(ann[k]) == count for k in ("dp_y", "dp_I", "dp_U", "dp_V"))
        for key in ("dp_U", "dp_V"):
            assert 0 <= min(ann[key]) and max(ann[key]) <= 1
        bx, by, bw, bh = ann["bbox"]
        xs = (bx + np.asarray(ann["dp_x"]) / 256 * bw).astype(int)
        ys = (by + np.asarray(ann["dp_y"]) / 256 * bh).astype(int)
        assert coco.annToMask(ann)[ys, xs].all()
        assert len(ann["dp_masks"]) == 14
        frame = np.zeros((256, 256), np.uint8)
        for coarse, rle in enumerate(ann["dp_masks"], start=1):
            if rle:
                frame[mask_util.decode(rle) > 0] = coarse
        coarse_of_points = np.array([fine_to_coarse[int(i)] for i in ann["dp_I"]])
        in_frame = frame[
            np.minimum(np.asarray(ann["dp_y"]).astype(int), 255),
            np.minimum(np.asarray(ann["dp_x"]).astype(int), 255),
        ]
        assert (in_frame == coarse_of_points).mean() > 0.8
        parts_seen |= set(coarse_of_points.tolist())
    assert len(parts_seen) >= 10


def test_size_variety(tmp_path):
    # At the default 320-640 px image sides, COCO's three size ranges are all well populated.
    write_shapes_dataset(tmp_path, 30, 0, seed=0, progress=False)
    instances = _load(tmp_path / "train" / "instances.json")
    areas = np.array([a["area"] for a in instances["annotations"] if not a["iscrowd"]])
    for in_range in (areas < 32**2, (areas >= 32**2) & (areas <= 96**2), areas > 96**2):
        assert in_range.mean() > 0.1
    orientation = {np.sign(i["height"] - i["width"]) for i in instances["images"]}
    assert orientation >= {-1, 1}
    sides = [s for i in instances["images"] for s in (i["height"], i["width"])]
    assert 320 <= min(sides) and max(sides) <= 640
    counts = np.bincount([a["image_id"] for a in instances["annotations"]], minlength=31)[1:]
    assert counts.max() <= 16 and len(set(counts.tolist())) > 5


def test_deterministic_across_workers_and_seeded(dataset, tmp_path):
    same = write_shapes_dataset(
        tmp_path / "same",
        NUM_TRAIN,
        NUM_VAL,
        seed=3,
        min_size=MIN_SIZE,
        max_size=MAX_SIZE,
        workers=1,
        progress=False,
    )
    assert _tree_bytes(same) == _tree_bytes(dataset)
    other = write_shapes_dataset(
        tmp_path / "other", 2, 0, seed=4, min_size=MIN_SIZE, max_size=MAX_SIZE, progress=False
    )
    first = "train/images/000000.jpg"
    assert _tree_bytes(other)[first] != _tree_bytes(dataset)[first]


def test_existing_dataset_is_not_regenerated(tmp_path):
    arguments = dict(seed=1, min_size=64, max_size=96, workers=1, progress=False)
    write_shapes_dataset(tmp_path, 2, 1, **arguments)
    instances = tmp_path / "train" / "instances.json"
    instances.write_text("{}")
    write_shapes_dataset(tmp_path, 2, 1, **arguments)
    assert instances.read_text() == "{}"
    write_shapes_dataset(tmp_path, 3, 1, **arguments)
    assert len(_load(instances)["images"]) == 3


def test_crowd_regions_and_empty_images(tmp_path, monkeypatch):
    monkeypatch.setattr(scene_module, "_CROWD_RATE", 1.0)
    monkeypatch.setattr(scene_module, "_EMPTY_IMAGE_RATE", 1.0)
    write_shapes_dataset(
        tmp_path, 3, 0, seed=0, min_size=128, max_size=128, workers=1, progress=False
    )
    instances = _load(tmp_path / "train" / "instances.json")
    assert len(instances["annotations"]) == 3
    for ann in instances["annotations"]:
        assert ann["iscrowd"] == 1 and ann["category_id"] == 1
        assert mask_util.area(ann["segmentation"]) == ann["area"]
    for ann in _load(tmp_path / "train" / "panoptic.json")["annotations"]:
        assert [s["iscrowd"] for s in ann["segments_info"]][0] == 1


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(num_train=-1), "num_train"),
        (dict(min_size=200, max_size=100), "min_size"),
        (dict(workers=0), "workers"),
    ],
)
def test_bad_arguments_are_rejected(tmp_path, arguments, message):
    with pytest.raises(ValueError, match=message):
        write_shapes_dataset(tmp_path, **arguments)
