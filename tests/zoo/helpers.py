"""Test helpers for the zoo: a local HTTP server, a tiny zoo index, Detectron2-format files."""

from __future__ import annotations

import hashlib
import pickle
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import torch
import yaml

_TINY_BACKBONE = {
    "class_path": "detzoo.backbones.FPN",
    "init_args": {
        "bottom_up": {
            "class_path": "detzoo.backbones.ResNet",
            "init_args": {
                "depth": 18,
                "norm": "FrozenBN",
                "freeze_at": 0,
                "stem_out_channels": 8,
                "res2_out_channels": 8,
                "out_features": ["res2", "res3", "res4", "res5"],
            },
        },
        "in_features": ["res2", "res3", "res4", "res5"],
        "out_channels": 16,
        "top_block": {"class_path": "detzoo.backbones.LastLevelMaxPool"},
    },
}
_TINY_RETINA_BACKBONE = {
    "class_path": "detzoo.backbones.FPN",
    "init_args": {
        "bottom_up": {
            "class_path": "detzoo.backbones.ResNet",
            "init_args": {
                "depth": 18,
                "norm": "FrozenBN",
                "freeze_at": 0,
                "stem_out_channels": 8,
                "res2_out_channels": 8,
                "out_features": ["res3", "res4", "res5"],
            },
        },
        "in_features": ["res3", "res4", "res5"],
        "out_channels": 16,
        "top_block": {
            "class_path": "detzoo.backbones.LastLevelP6P7",
            "init_args": {"in_channels": 64, "out_channels": 16, "in_feature": "res5"},
        },
    },
}
_NORMALISATION = {
    "input_format": "RGB",
    "pixel_mean": [123.675, 116.28, 103.53],
    "pixel_std": [58.395, 57.12, 57.375],
}
_DATA = {
    "class_path": "detzoo.data.ShapesDataModule",
    "init_args": {"root": "unused", "test_min_size": 64, "test_max_size": 96},
}
TINY_CONFIGS = {
    "tiny_faster_rcnn": {
        "model": {
            "class_path": "detzoo.models.FasterRCNN",
            "init_args": {"num_classes": 3, "backbone": _TINY_BACKBONE, **_NORMALISATION},
        },
        "data": _DATA,
    },
    "tiny_retinanet": {
        "model": {
            "class_path": "detzoo.models.RetinaNet",
            "init_args": {"num_classes": 3, "backbone": _TINY_RETINA_BACKBONE, **_NORMALISATION},
        },
        "data": _DATA,
    },
}
TINY_CLASSES = ["cat", "dog", "bird"]


def write_tiny_zoo(root: Path, weights: dict[str, dict] | None = None) -> Path:
    """Writes ``root/index.yaml`` and the tiny models' configs; ``weights`` maps a model name to
    its index ``weights:`` entry. Returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    models = []
    for name, config in TINY_CONFIGS.items():
        (root / f"{name}.yaml").write_text(yaml.safe_dump(config))
        models.append(
            {
                "name": name,
                "task": "detection",
                "config": f"{name}.yaml",
                "dataset": "pets",
                "classes": "pets",
                "weights": (weights or {}).get(name),
                "metrics": {"bbox/AP": 12.5},
            }
        )
    index = {"classes": {"pets": TINY_CLASSES}, "models": models}
    (root / "index.yaml").write_text(yaml.safe_dump(index, sort_keys=False))
    return root


def randomised_state(model: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """``model``'s state dict with seeded noise added to every float tensor: values no fresh
    model has, at a scale that still predicts finite boxes (running variances stay positive)."""
    g = torch.Generator().manual_seed(seed)
    return {
        k: v + 0.05 * torch.randn(v.shape, generator=g).to(v.dtype)
        if v.is_floating_point()
        else v.clone()
        for k, v in model.state_dict().items()
    }


def write_detectron2_pkl(state: dict[str, torch.Tensor], directory: Path) -> Path:
    """A Detectron2 model-zoo style file ``model_final_<md5[:6]>.pkl`` holding ``state``."""
    data = {
        "model": {k: v.numpy() for k, v in state.items()},
        "__author__": "Detectron2 Model Zoo",
    }
    payload = pickle.dumps(data, protocol=2)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"model_final_{hashlib.md5(payload).hexdigest()[:6]}.pkl"
    path.write_bytes(payload)
    return path


class Server:
    """Serves files on 127.0.0.1 (``files``: URL path → bytes; ranges honoured); records each
    request's (path, Range header). ``cut_first``: that many responses stop half way;
    ``fail_first``: that many requests get HTTP 500; ``delay``: seconds before each body."""

    def __init__(self, files: dict[str, bytes] | None = None):
        self.files = dict(files or {})
        self.requests: list[tuple[str, str | None]] = []
        self.cut_first = 0
        self.fail_first = 0
        self.delay = 0.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append((self.path, self.headers.get("Range")))
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404, "Not Found")
                    return
                if server.fail_first > 0:
                    server.fail_first -= 1
                    self.send_error(500, "Internal Server Error")
                    return
                start = 0
                if rng := self.headers.get("Range"):
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_error(416, "Range Not Satisfiable")
                        return
                body = body[start:]
                self.send_response(206 if start else 200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                time.sleep(server.delay)
                if server.cut_first > 0:
                    server.cut_first -= 1
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
