"""Recording how a module was built, so a model rebuilds from a checkpoint alone.

detzoo models take their parts as objects (``FasterRCNN(backbone=FPN(ResNet(...)), ...)``). A class
that inherits :class:`Recordable` remembers the arguments of its own ``__init__`` as a spec in the
LightningCLI / jsonargparse format — ``{"class_path": "pkg.mod.Class", "init_args": {...}}`` —
with nested recordable modules replaced by their specs. A spec is plain data (YAML/JSON-able): it
goes into ``save_hyperparameters`` and ``weights_only`` checkpoints, and :func:`build` turns it back
into the object. This is written here because Lightning only records init arguments of the
LightningModule itself (nn.Module arguments are pickled or dropped), and jsonargparse only for
objects it instantiated from a config.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Mapping
from typing import Any

_SPEC_ATTR = "_detzoo_spec"
_UNRECORDED_ATTR = "_detzoo_unrecorded"
_PLAIN = (str, int, float, bool, type(None))


class ConfigError(ValueError):
    """A spec or argument that cannot be recorded or rebuilt."""


def to_spec_value(value: Any, where: str) -> Any:
    """Plain-data form of an init argument: recordables become specs, sequences lists."""
    if isinstance(value, _PLAIN):
        return value
    if hasattr(value, _SPEC_ATTR) and getattr(value, _SPEC_ATTR) is not None:
        return spec_of(value)
    if isinstance(value, (list, tuple)):
        return [to_spec_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        return {str(k): to_spec_value(v, f"{where}.{k}") for k, v in value.items()}
    raise ConfigError(
        f"{where}: cannot record a {type(value).__qualname__} as plain data; pass numbers, strings, "
        f"lists or detzoo modules (or subclass detzoo.config.Recordable)"
    )


def spec_of(obj: Any) -> dict:
    """The ``{"class_path", "init_args"}`` spec ``obj`` was built with."""
    spec = getattr(obj, _SPEC_ATTR, None)
    if spec is None:
        why = getattr(obj, _UNRECORDED_ATTR, "it is not a detzoo.config.Recordable")
        raise ConfigError(f"{type(obj).__qualname__} cannot be rebuilt from a spec: {why}")
    return spec


def is_spec(value: Any) -> bool:
    return isinstance(value, Mapping) and "class_path" in value


def build(value: Any) -> Any:
    """Builds the object of a spec (recursively); returns any other value unchanged."""
    if isinstance(value, list):
        return [build(v) for v in value]
    if not is_spec(value):
        return value
    module_name, _, class_name = value["class_path"].rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"cannot import {value['class_path']!r}: {err}") from err
    init_args = {k: build(v) for k, v in dict(value.get("init_args", {})).items()}
    try:
        return cls(**init_args)
    except TypeError as err:
        raise ConfigError(f"building {value['class_path']} from its spec: {err}") from err


def _record(cls: type, signature: inspect.Signature, args: tuple, kwargs: dict) -> dict:
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    init_args = {}
    for name, value in list(bound.arguments.items())[1:]:
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            init_args.update(
                {k: to_spec_value(v, f"{cls.__qualname__}.{k}") for k, v in value.items()}
            )
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            raise ConfigError(f"{cls.__qualname__}: *args cannot be recorded")
        else:
            init_args[name] = to_spec_value(value, f"{cls.__qualname__}.{name}")
    return init_args


class Recordable:
    """Mixin: instances remember their ``__init__`` arguments as a spec (see module docstring).

    Only the outermost ``__init__`` (the instance's own class) is recorded, with defaults filled in.
    An argument that is not plain data or a recordable module (a user's own ``nn.Module``) leaves
    the instance unrecorded: it works as usual, and :func:`spec_of` says why it has no spec.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self, *args, **kw):
            outermost = _SPEC_ATTR not in self.__dict__
            if outermost:
                self.__dict__[_SPEC_ATTR] = None
            init(self, *args, **kw)
            if outermost and type(self).__init__ is recording_init:
                try:
                    init_args = _record(cls, signature, (self, *args), kw)
                except ConfigError as err:
                    self.__dict__[_UNRECORDED_ATTR] = str(err)
                    self.on_unrecorded(str(err))
                    return
                self.__dict__[_SPEC_ATTR] = {
                    "class_path": f"{cls.__module__}.{cls.__qualname__}",
                    "init_args": init_args,
                }
                self.on_recorded()

        cls.__init__ = recording_init

    def on_recorded(self) -> None:
        """Called once the spec is recorded (models save it as their hyper-parameters)."""

    def on_unrecorded(self, reason: str) -> None:
        """Called instead of :meth:`on_recorded` when an argument cannot be recorded."""
