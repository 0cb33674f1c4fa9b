import pytest
import torch
from torch import nn

from detzoo.config import ConfigError, Recordable, build, spec_of


class Inner(Recordable, nn.Module):
    def __init__(self, channels: int, scale: float = 2.0):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)
        self.scale = scale


class Outer(Recordable, nn.Module):
    def __init__(self, inner: Inner, names=("a", "b"), **extra):
        super().__init__()
        self.inner = inner
        self.names = names
        self.extra = extra


class Derived(Inner):
    def __init__(self, channels: int, bias: bool = True):
        super().__init__(channels, scale=3.0)
        self.bias = bias


def test_spec_records_outermost_init_with_defaults_and_nested_modules():
    outer = Outer(Inner(4), names=["x"], depth=3)
    spec = spec_of(outer)
    assert spec == {
        "class_path": f"{__name__}.Outer",
        "init_args": {
            "inner": {
                "class_path": f"{__name__}.Inner",
                "init_args": {"channels": 4, "scale": 2.0},
            },
            "names": ["x"],
            "depth": 3,
        },
    }
    rebuilt = build(spec)
    assert isinstance(rebuilt, Outer) and isinstance(rebuilt.inner, Inner)
    assert rebuilt.inner.conv.in_channels == 4 and rebuilt.extra == {"depth": 3}


def test_subclass_records_its_own_arguments_only():
    spec = spec_of(Derived(2, bias=False))
    assert spec["class_path"].endswith(".Derived")
    assert spec["init_args"] == {"channels": 2, "bias": False}


def test_unrecordable_argument_leaves_a_working_module_without_spec():
    outer = Outer(torch.zeros(1))
    assert outer.inner.shape == (1,)
    with pytest.raises(ConfigError, match="Outer.inner: cannot record a Tensor"):
        spec_of(outer)
    with pytest.raises(ConfigError, match="cannot be rebuilt"):
        spec_of(Outer(Outer(torch.zeros(1))))


def test_build_reports_bad_class_path():
    with pytest.raises(ConfigError, match="cannot import"):
        build({"class_path": "detzoo.nothing.Here", "init_args": {}})
