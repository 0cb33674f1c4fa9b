"""``BackboneWeights``: start training from ImageNet backbone weights, named in a config.

Detectron2 configs say ``MODEL.WEIGHTS: detectron2://ImageNetPretrained/MSRA/R-50.pkl``. detzoo
models take no weights argument (a model never reaches for files), so a zoo config lists this
callback under ``trainer.callbacks`` instead::

    - class_path: detzoo.callbacks.BackboneWeights
      init_args: {weights: https://dl.fbaipublicfiles.com/detectron2/ImageNetPretrained/MSRA/R-50.pkl}
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities import rank_zero_info


class BackboneWeights(L.Callback):
    """Loads ImageNet weights into the model's ResNet when ``fit`` sets up (see
    :func:`detzoo.zoo.backbone_weights.load_imagenet_backbone` for the files understood).

    The file is fetched once into the detzoo cache (``$DETZOO_CACHE``, default
    ``~/.cache/detzoo``) and verified when a checksum is given. Nothing is loaded for
    ``validate``/``test``/``predict``; when ``fit`` resumes from a checkpoint, Lightning restores
    the checkpoint after this, so the resumed weights win.

    Args:
        weights: a path, ``file://`` or ``http(s)://`` URL of the ImageNet checkpoint.
        sha256: its full sha256, to verify it.
        md5_prefix: or the first hex digits of its md5.
    """

    def __init__(
        self, weights: str, sha256: str | None = None, md5_prefix: str | None = None
    ) -> None:
        self.weights = weights
        self.sha256 = sha256
        self.md5_prefix = md5_prefix
        self.loaded: list[str] = []

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        from detzoo.zoo.backbone_weights import load_imagenet_backbone
        from detzoo.zoo.download import fetch

        path = fetch(self.weights, sha256=self.sha256, md5_prefix=self.md5_prefix)
        self.loaded = load_imagenet_backbone(pl_module, path)
        rank_zero_info(f"BackboneWeights: {len(self.loaded)} backbone tensors from {path}")
