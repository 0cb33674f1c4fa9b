"""The ``detzoo`` command line, called in-process."""

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import detzoo
from detzoo.cli import main

from .zoo.helpers import (
    TINY_CLASSES,
    TINY_CONFIGS,
    Server,
    randomised_state,
    write_detectron2_pkl,
    write_tiny_zoo,
)


def test_data_shapes_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "shapes"
    code = main(
        ["data", "shapes", "--out", str(out), "--num-train", "3", "--num-val", "2", "--seed", "7"]
        + ["--min-size", "96", "--max-size", "128", "--workers", "1"]
    )
    assert code == 0
    manifest = json.loads((out / "shapes.json").read_text())
    assert (manifest["seed"], manifest["num_train"], manifest["num_val"]) == (7, 3, 2)
    assert len(json.loads((out / "val" / "instances.json").read_text())["images"]) == 2
    assert len(list((out / "train" / "images").glob("*.jpg"))) == 3
    assert str(out) in capsys.readouterr().out


def test_user_error_is_one_line_without_traceback(tmp_path, capsys):
    code = main(["data", "shapes", "--out", str(tmp_path), "--num-train", "-5"])
    assert code == 1
    error = capsys.readouterr().err
    assert error.startswith("detzoo: error: num_train") and "Traceback" not in error
    assert not (tmp_path / "shapes.json").exists()


def test_missing_or_unknown_command_is_a_usage_error(capsys):
    assert main([]) == 2
    assert main(["data"]) == 2
    assert main(["data", "shapes"]) == 2  # --out is required
    assert "--out" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2


def test_help_exits_cleanly(capsys):
    assert main(["--help"]) == 0
    assert "data" in capsys.readouterr().out


# ---- detzoo zoo / predict / demo ----------------------------------------------------------------
# Tiny models from a temporary zoo index (tests/zoo/helpers.py); weights served on 127.0.0.1 only.


@pytest.fixture
def tiny_zoo(tmp_path, monkeypatch):
    monkeypatch.setenv("DETZOO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("DETZOO_ZOO_CONFIGS", str(tmp_path / "zoo"))
    return lambda weights=None: write_tiny_zoo(tmp_path / "zoo", weights)


def _tiny_pkl(directory: Path) -> Path:
    from detzoo.zoo.build import build_model

    return write_detectron2_pkl(
        randomised_state(build_model(TINY_CONFIGS["tiny_faster_rcnn"])), directory
    )


def _images(directory: Path) -> dict[str, tuple[int, int]]:
    """Two noisy RGB images of different sizes; returns their names and (H, W)."""
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    sizes = {"a.png": (90, 120), "b.jpg": (130, 70)}
    for name, (h, w) in sizes.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(directory / name)
    return sizes


def test_zoo_list_shows_every_model_uncached(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("DETZOO_CACHE", str(tmp_path))
    monkeypatch.delenv("DETZOO_ZOO_CONFIGS", raising=False)
    assert main(["zoo", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["NAME", "TASK", "METRICS", "WEIGHTS", "CACHED"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["faster_rcnn_R50_FPN_3x"] == [
        "faster_rcnn_R50_FPN_3x", "detection", "bbox/AP", "40.2", "detectron2", "no"
    ]  # fmt: skip
    assert rows["faster_rcnn_R18_FPN_shapes"][-2:] == ["-", "-"]
    assert len(rows) == len(detzoo.zoo.list_models())
    assert main(["zoo", "list", "--task", "keypoints"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.strip().splitlines()[1:]]
    assert listed == detzoo.zoo.list_models(task="keypoints")
    assert listed and all(name.startswith("keypoint_rcnn_") for name in listed)
    assert main(["zoo", "list", "--task", "nope"]) == 1


def test_zoo_download_fetches_into_the_cache(tiny_zoo, tmp_path, capsys):
    pkl = _tiny_pkl(tmp_path / "files")
    server = Server({f"/d2/{pkl.name}": pkl.read_bytes()})
    try:
        tiny_zoo(
            {"tiny_faster_rcnn": {"format": "detectron2", "url": f"{server.url}/d2/{pkl.name}"}}
        )
        assert main(["zoo", "download", "tiny_faster_rcnn", "--quiet"]) == 0
    finally:
        server.close()
    cached = tmp_path / "cache" / "weights" / pkl.name
    assert cached.read_bytes() == pkl.read_bytes()
    assert f"tiny_faster_rcnn: {cached}" in capsys.readouterr().out
    assert main(["zoo", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[-1] == "yes"
    assert main(["zoo", "download", "tiny_retinanet"]) == 1  # no published weights
    assert main(["zoo", "download", "nope"]) == 1
    assert "no zoo model named 'nope'" in capsys.readouterr().err


def test_predict_zoo_model_writes_drawings_and_json(tiny_zoo, tmp_path, capsys):
    tiny_zoo()
    pkl = _tiny_pkl(tmp_path / "files")
    sizes = _images(tmp_path / "images")
    out = tmp_path / "out"
    code = main(
        ["predict", "--model", "tiny_faster_rcnn", "--weights", str(pkl), "--device", "cpu"]
        + ["--score-thresh", "0.01", str(tmp_path / "images"), "--out", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "predictions.json").read_text())
    assert result["test_size"] == [64, 96]  # the tiny config's data module: test_min/max_size
    assert result["class_names"] == TINY_CLASSES and result["score_thresh"] == 0.01
    model = detzoo.zoo.get("tiny_faster_rcnn", weights=pkl, score_thresh=0.01, device="cpu")
    predictor = detzoo.Predictor(model, 64, 96)
    for record in result["images"]:
        name = Path(record["file"]).name
        assert (record["height"], record["width"]) == sizes[name]
        drawn = np.asarray(Image.open(out / record["drawn"]))
        assert drawn.shape == (*sizes[name], 3)
        expected = predictor(record["file"])
        assert len(record["instances"]) == len(expected["scores"]) > 0
        for instance, box, score, label in zip(
            record["instances"], expected["boxes"], expected["scores"], expected["labels"]
        ):
            assert instance["box"] == pytest.approx(box.tolist(), abs=0.01)
            assert instance["score"] == pytest.approx(float(score), abs=1e-5) and score >= 0.01
            assert instance["class_name"] == TINY_CLASSES[int(label)]


def test_predict_checkpoint_rebuilds_its_model(tiny_zoo, tmp_path, capsys):
    tiny_zoo()
    weights = detzoo.zoo.save_weights(
        detzoo.zoo.get("tiny_faster_rcnn", pretrained=False), tmp_path / "mine.safetensors"
    )
    _images(tmp_path / "images")
    out = tmp_path / "out"
    code = main(
        ["predict", "--model", str(weights), "--min-size", "48", "--device", "cpu"]
        + [str(tmp_path / "images" / "a.png"), "--out", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "predictions.json").read_text())
    assert result["test_size"] == [48, 1333] and len(result["images"]) == 1
    assert (out / "a.png").is_file()


def test_predict_with_config_is_lightning_predict(monkeypatch):
    calls = []
    monkeypatch.setattr(
        "detzoo.lightning_cli.run_lightning", lambda sub, argv: calls.append((sub, argv)) or 0
    )
    assert main(["predict", "--config", "x.yaml", "--ckpt_path", "y.ckpt"]) == 0
    assert calls == [("predict", ["--config", "x.yaml", "--ckpt_path", "y.ckpt"])]


def test_predict_user_errors_are_one_line(tiny_zoo, tmp_path, capsys):
    tiny_zoo()
    _images(tmp_path / "images")
    images = str(tmp_path / "images")
    assert main(["predict", "--model", "tiny_faster", images, "--out", str(tmp_path)]) == 1
    assert "Did you mean tiny_faster_rcnn" in capsys.readouterr().err
    missing = str(tmp_path / "nothere.jpg")
    assert main(["predict", "--model", "tiny_faster_rcnn", missing, "--out", str(tmp_path)]) == 1
    assert "nothere.jpg" in capsys.readouterr().err
    assert main(["predict", "--model", "tiny_faster_rcnn"]) == 2  # images and --out required
    assert main(["predict", "--help"]) == 0
    assert "--config" in capsys.readouterr().out


def test_demo_uses_the_newest_checkpoint_on_fresh_shapes_images(tiny_zoo, tmp_path, capsys):
    tiny_zoo()
    model = detzoo.zoo.get("tiny_faster_rcnn", pretrained=False, device="cpu")
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False)
    trainer.strategy.connect(model)
    checkpoint = tmp_path / "logs" / "version_3" / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(checkpoint)
    # what LightningCLI saves beside a run: its test-time size and data say how to predict
    (checkpoint.parents[1] / "config.yaml").write_text(
        yaml.safe_dump(TINY_CONFIGS["tiny_faster_rcnn"])
    )
    out = tmp_path / "demo"
    code = main(
        ["demo", "--logs", str(tmp_path / "logs"), "--out", str(out), "--num-images", "2"]
        + ["--device", "cpu"]
    )
    assert code == 0, capsys.readouterr().err
    assert f"model: {checkpoint}" in capsys.readouterr().out
    result = json.loads((out / "predictions.json").read_text())
    assert result["test_size"] == [64, 96] and result["class_names"] == TINY_CLASSES
    assert [Path(r["file"]).parent for r in result["images"]] == [
        out / "shapes" / "val" / "images"
    ] * 2
    assert all((out / r["drawn"]).is_file() for r in result["images"])


def test_demo_without_a_trained_model_says_how_to_get_one(tmp_path, capsys):
    assert main(["demo", "--logs", str(tmp_path / "none"), "--out", str(tmp_path / "d")]) == 1
    assert "detzoo fit --config zoo_configs/shapes/" in capsys.readouterr().err


def test_predict_panoptic_model_writes_segments(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(
        "DETZOO_ZOO_CONFIGS", str(Path(__file__).resolve().parents[1] / "zoo_configs")
    )
    torch.manual_seed(0)  # the random weights decide what is predicted
    model = detzoo.zoo.get("panoptic_fpn_R18_FPN_shapes", pretrained=False, score_thresh=0.0)
    weights = detzoo.zoo.save_weights(model, tmp_path / "panoptic.safetensors")
    _images(tmp_path / "images")
    out = tmp_path / "out"
    code = main(
        ["predict", "--model", str(weights), "--min-size", "64", "--device", "cpu"]
        + [str(tmp_path / "images" / "a.png"), "--out", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    (record,) = json.loads((out / "predictions.json").read_text())["images"]
    rgb = np.asarray(Image.open(out / record["panoptic"])).astype(np.int64)
    assert rgb.shape == (90, 120, 3)
    ids = rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]
    assert set(np.unique(ids).tolist()) - {0} == {s["id"] for s in record["segments_info"]}
    assert record["segments_info"], "a score threshold of 0 pastes at least one instance"
