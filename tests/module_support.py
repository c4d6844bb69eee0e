"""Small helpers for tests that reach into a built module (test_archs, test_blend)."""
from __future__ import annotations

from torch import nn


def conv_at(module: nn.Module, *path: int) -> nn.Conv2d:
    """The Conv2d at `path` inside nested Sequential/ModuleList containers, checked (and typed for mypy)."""
    for index in path:
        assert isinstance(module, (nn.Sequential, nn.ModuleList)), module
        module = module[index]
    assert isinstance(module, nn.Conv2d), module
    return module


def zero_conv(module: nn.Module, *path: int) -> None:
    """Zero the weight and bias of the Conv2d at `path` (see conv_at)."""
    conv = conv_at(module, *path)
    assert conv.bias is not None
    conv.weight.zero_()
    conv.bias.zero_()
