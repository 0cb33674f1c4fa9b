"""The ``detzoo`` command line, called in-process."""

import json

from detzoo.cli import main


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
