"""Any timm model with ``features_only`` support as a detzoo backbone (plugs into FPN)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from detzoo.backbones.base import Backbone, ShapeSpec, freeze
from detzoo.config import Recordable


class TimmBackbone(Recordable, Backbone):
    """Wraps ``timm.create_model(model_name, features_only=True, ...)``.

    Outputs are named ``res<k>`` with ``k = log2(stride)`` (``res2``..``res5`` for the usual four
    stages), so the backbone drops into :class:`~detzoo.backbones.FPN` exactly like ResNet. Channels
    and strides come from timm's ``feature_info``.

    Args:
        model_name: a timm model name (``"resnet18"``, ``"convnext_tiny"``, ``"efficientnet_b0"``, ...).
        out_indices: which feature stages to return (timm's indices); default: the last four.
        pretrained: load timm's pretrained weights (needs the network or a local HF cache).
        frozen: freeze every parameter (a fixed feature extractor).
        **timm_kwargs: passed to ``timm.create_model`` (e.g. ``drop_path_rate``).

    Inputs are normalised by the detector (``pixel_mean``/``pixel_std``, RGB for timm weights).
    """

    def __init__(
        self,
        model_name: str,
        out_indices: Sequence[int] | None = None,
        pretrained: bool = False,
        frozen: bool = False,
        **timm_kwargs,
    ):
        super().__init__()
        import timm  # imported here: only TimmBackbone needs it

        if out_indices is None:
            probe = timm.create_model(
                model_name, pretrained=False, features_only=True, **timm_kwargs
            )
            count = len(probe.feature_info.reduction())
            out_indices = tuple(range(max(0, count - 4), count))
        try:
            self.body = timm.create_model(
                model_name,
                pretrained=pretrained,
                features_only=True,
                out_indices=tuple(out_indices),
                **timm_kwargs,
            )
        except RuntimeError as err:
            raise ValueError(
                f"timm model {model_name!r} cannot be used as a backbone (features_only failed: {err}); "
                f"pick a model listed by timm.list_models() that supports features_only"
            ) from err
        info = self.body.feature_info
        self._names = [f"res{int(math.log2(r))}" for r in info.reduction()]
        if len(set(self._names)) != len(self._names):
            raise ValueError(
                f"timm model {model_name!r} returns two stages at the same stride ({info.reduction()})"
            )
        self._shapes = {
            n: ShapeSpec(c, r) for n, c, r in zip(self._names, info.channels(), info.reduction())
        }
        if frozen:
            freeze(self.body)

    def output_shape(self) -> dict[str, ShapeSpec]:
        return dict(self._shapes)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self._names, self.body(x)))
