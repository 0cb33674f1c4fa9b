import pytest
import torch

from detzoo.data import VOC_CLASS_NAMES, VocDetection

from .tiny_coco import write_image

XML = """<annotation><size><width>{w}</width><height>{h}</height><depth>3</depth></size>
{objects}</annotation>"""
OBJECT = """<object><name>{name}</name><difficult>{difficult}</difficult>
<bndbox><xmin>{box[0]}</xmin><ymin>{box[1]}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox>
</object>"""


def _write_voc(root, objects):
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("000001\n000002\n")
    body = "".join(OBJECT.format(name=n, difficult=d, box=b) for n, d, b in objects)
    (root / "Annotations" / "000001.xml").write_text(XML.format(w=50, h=40, objects=body))
    (root / "Annotations" / "000002.xml").write_text(XML.format(w=30, h=20, objects=""))
    write_image(root / "JPEGImages" / "000001.jpg", 40, 50)
    write_image(root / "JPEGImages" / "000002.jpg", 20, 30)


def test_voc_boxes_labels_and_difficult_as_ignore(tmp_path):
    _write_voc(tmp_path, [("dog", 0, (11, 6, 30, 25)), ("person", 1, (1, 1, 10, 40))])
    dataset = VocDetection(tmp_path, "train")
    assert dataset.class_names == list(VOC_CLASS_NAMES)
    image, target = dataset[0]
    assert image.shape == (3, 40, 50)
    torch.testing.assert_close(target["boxes"], torch.tensor([[10.0, 5, 30, 25], [0, 0, 10, 40]]))
    assert target["labels"].tolist() == [11, 14]
    assert target["iscrowd"].tolist() == [0, 1]
    torch.testing.assert_close(target["area"], torch.tensor([400.0, 400.0]))
    assert dataset[1][1]["boxes"].shape == (0, 4)


def test_unknown_class_and_missing_split(tmp_path):
    _write_voc(tmp_path, [("unicorn", 0, (1, 1, 5, 5))])
    with pytest.raises(ValueError, match=r"000001\.xml: object 0 has unknown class 'unicorn'"):
        VocDetection(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="val.txt"):
        VocDetection(tmp_path, "val")
